"""Shared code of the mail proxy's Lambda functions (the SAM layer).

Dependencies point inward: ``domain`` modules import nothing from the AWS adapters; the repository is the
only module that knows DynamoDB keys and item shapes.
"""
