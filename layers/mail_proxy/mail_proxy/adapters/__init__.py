"""The outside world: DynamoDB, SQS, S3, Secrets Manager, outbound HTTP, logs and metrics."""
