"""The local stack's moto server: the same AWS emulation, over connections that stay open."""

from __future__ import annotations

import http.client
import io
from collections.abc import Iterator

import boto3
import pytest

from local.moto_server import KeepAliveMotoServer, _read_chunked, _signature_service
from local.resources import SERVICE_GROUPS, MotoServer


@pytest.fixture
def server() -> Iterator[KeepAliveMotoServer]:
    running = KeepAliveMotoServer("127.0.0.1", 0)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def test_one_connection_serves_request_after_request(server: KeepAliveMotoServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        sockets = []
        for _ in range(3):
            connection.request("GET", "/moto-api/data.json")
            response = connection.getresponse()
            assert response.status == 200 and response.read()
            assert not response.will_close
            sockets.append(connection.sock)
        assert sockets[0] is not None and all(sock is sockets[0] for sock in sockets)
    finally:
        connection.close()


def test_dynamodb_sqs_and_s3_answer_as_through_moto_server(server: KeepAliveMotoServer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    endpoint = f"http://127.0.0.1:{server.port}"
    dynamodb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint)
    dynamodb.create_table(TableName="t", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                          BillingMode="PAY_PER_REQUEST")
    dynamodb.put_item(TableName="t", Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    assert dynamodb.get_item(TableName="t", Key={"pk": {"S": "a"}})["Item"]["n"] == {"N": "1"}
    with pytest.raises(dynamodb.exceptions.ConditionalCheckFailedException):
        dynamodb.put_item(TableName="t", Item={"pk": {"S": "a"}}, ConditionExpression="attribute_not_exists(pk)")
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint)
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url)["Messages"]] == ["hello"]
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint)
    s3.create_bucket(Bucket="local-bucket")
    s3.put_object(Bucket="local-bucket", Key="k", Body=b"x" * 200_000)
    assert s3.get_object(Bucket="local-bucket", Key="k")["Body"].read() == b"x" * 200_000
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket="local-bucket", Key="missing")


def test_a_chunked_request_body_is_read_whole() -> None:
    stream = io.BytesIO(b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT")
    assert _read_chunked(stream) == b"hello world"
    assert stream.read() == b"NEXT"  # the next request on the connection is left untouched


def test_the_signed_service_is_read_from_the_authorization_header() -> None:
    auth = "AWS4-HMAC-SHA256 Credential=KEY/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=x"
    assert _signature_service({"HTTP_AUTHORIZATION": auth}) == "dynamodb"
    assert _signature_service({}) is None


def test_each_service_group_gets_its_own_endpoint_variable() -> None:
    server = MotoServer(port=5999)
    server.group_ports = {group: 6000 + index for index, group in enumerate(SERVICE_GROUPS)}
    environment = server.environment()
    assert environment["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5999"
    assert environment["AWS_ENDPOINT_URL_DYNAMODB"] == environment["AWS_ENDPOINT_URL_DYNAMODB_STREAMS"]
    assert environment["AWS_ENDPOINT_URL_SQS"] != environment["AWS_ENDPOINT_URL_DYNAMODB"]
    assert environment["AWS_ENDPOINT_URL_SQS"] != environment["AWS_ENDPOINT_URL"]


def _dynamodb_answers(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The same DynamoDB and stream calls, their answers without what differs from run to run."""
    from moto import mock_aws

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    answers: list[object] = []
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        table = dynamodb.create_table(
            TableName="t", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                      {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST", StreamSpecification={"StreamEnabled": True,
                                                                "StreamViewType": "NEW_AND_OLD_IMAGES"})
        for index in range(5):
            dynamodb.put_item(TableName="t", Item={
                "pk": {"S": "p"}, "sk": {"S": f"{index}"}, "b": {"B": bytes([index, 255])}, "n": {"N": str(index)},
                "l": {"L": [{"M": {"x": {"NULL": True}, "ss": {"SS": ["a", "b"]}}}]}, "t": {"BOOL": index % 2 == 0}})
        dynamodb.update_item(TableName="t", Key={"pk": {"S": "p"}, "sk": {"S": "1"}}, UpdateExpression="SET n = n + :o",
                             ExpressionAttributeValues={":o": {"N": "1"}})
        page = dynamodb.query(TableName="t", KeyConditionExpression="pk = :p",
                              ExpressionAttributeValues={":p": {"S": "p"}}, Limit=3)
        rest = dynamodb.query(TableName="t", KeyConditionExpression="pk = :p",
                              ExclusiveStartKey=page["LastEvaluatedKey"],
                              ExpressionAttributeValues={":p": {"S": "p"}}, Limit=3)
        got = dynamodb.batch_get_item(RequestItems={"t": {"Keys": [{"pk": {"S": "p"}, "sk": {"S": "0"}}]}})
        answers += [page["Items"], page["LastEvaluatedKey"], rest["Items"], "LastEvaluatedKey" in rest,
                    got["Responses"], got["UnprocessedKeys"]]
        try:
            dynamodb.put_item(TableName="t", Item={"pk": {"S": "p"}, "sk": {"S": "0"}},
                              ConditionExpression="attribute_not_exists(pk)")
        except dynamodb.exceptions.ConditionalCheckFailedException as error:
            answers.append(error.response["Error"]["Code"])
        streams = boto3.client("dynamodbstreams", region_name="us-east-1")
        arn = table["TableDescription"]["LatestStreamArn"]
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard,
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records = streams.get_records(ShardIterator=iterator)["Records"]
        sequence = [int(record["dynamodb"].pop("SequenceNumber")) for record in records]
        assert sequence == sorted(sequence) and len(set(sequence)) == len(records) == 6
        for record in records:
            record.pop("eventID")
            assert record["dynamodb"].pop("ApproximateCreationDateTime").year >= 2024
            assert record["dynamodb"].pop("SizeBytes") > 0  # moto counts the time's digits in it
        answers.append(records)
    return answers


def test_dynamodb_answers_the_same_through_the_fast_serializer(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.core import responses

    from local.moto_speedups import use_fast_json_serializer

    expected = _dynamodb_answers(monkeypatch)
    monkeypatch.setattr(responses, "get_serializer_class", responses.get_serializer_class)  # undone after the test
    use_fast_json_serializer()
    assert getattr(responses.get_serializer_class, "_local_fast_json", False)
    assert _dynamodb_answers(monkeypatch) == expected
