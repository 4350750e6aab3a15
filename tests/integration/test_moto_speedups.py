"""The local stack's and the suite's faster moto Query (local/moto_speedups.py) answers exactly as moto does:
same items, same order, same pages, for table and index queries on random tables."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from moto.dynamodb.models.table import Table

from local.moto_speedups import speed_up_moto

TABLE = "SpeedupTable"
HASHES = st.sampled_from(["a", "b", "c"])
SORTS = st.text(alphabet="xyz01", min_size=1, max_size=3)
ITEMS = st.lists(
    st.fixed_dictionaries({"pk": HASHES, "sk": SORTS},
                          optional={"gpk": st.sampled_from(["g1", "g2"]), "gsk": SORTS,
                                    "n": st.integers(-5, 5)}),
    max_size=25)
QUERIES = st.fixed_dictionaries({
    "index": st.booleans(), "hash": st.sampled_from(["a", "b", "c", "g1", "g2", "zz"]),
    "begins": st.none() | SORTS, "forward": st.booleans(), "limit": st.none() | st.integers(1, 4),
    "filter": st.booleans(),
})


@pytest.fixture(scope="module")
def dynamodb(aws_env_module: None) -> Iterator[Any]:
    speed_up_moto()
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk", "gpk", "gsk")],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[{
                "IndexName": "ByG", "Projection": {"ProjectionType": "KEYS_ONLY"},
                "KeySchema": [{"AttributeName": "gpk", "KeyType": "HASH"},
                              {"AttributeName": "gsk", "KeyType": "RANGE"}],
            }])
        yield client


@pytest.fixture(scope="module")
def aws_env_module() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        from tests.fixtures.stack import use_test_aws_environment

        use_test_aws_environment(mp)
        yield


def _every_page(client: Any, query: dict[str, Any]) -> list[Any]:
    hash_name, sort_name = ("gpk", "gsk") if query["index"] else ("pk", "sk")
    kwargs: dict[str, Any] = {"TableName": TABLE, "ScanIndexForward": query["forward"],
                              "ExpressionAttributeNames": {"#h": hash_name},
                              "ExpressionAttributeValues": {":h": {"S": query["hash"]}}}
    condition = "#h = :h"
    if query["begins"] is not None:
        condition += " AND begins_with(#s, :s)"
        kwargs["ExpressionAttributeNames"]["#s"] = sort_name
        kwargs["ExpressionAttributeValues"][":s"] = {"S": query["begins"]}
    kwargs["KeyConditionExpression"] = condition
    if query["index"]:
        kwargs["IndexName"] = "ByG"
    if query["limit"]:
        kwargs["Limit"] = query["limit"]
    if query["filter"] and not query["index"]:
        kwargs["FilterExpression"] = "attribute_exists(n)"
    pages = []
    for _ in range(60):
        page = client.query(**kwargs)
        pages.append((page["Items"], page.get("LastEvaluatedKey"), page["Count"], page["ScannedCount"]))
        if "LastEvaluatedKey" not in page:
            return pages
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    raise AssertionError("more than 60 pages")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=ITEMS, queries=st.lists(QUERIES, min_size=1, max_size=4))
def test_query_answers_as_moto_does(dynamodb: Any, monkeypatch: pytest.MonkeyPatch, items: list[dict[str, Any]],
                                    queries: list[dict[str, Any]]) -> None:
    for old in dynamodb.scan(TableName=TABLE)["Items"]:
        dynamodb.delete_item(TableName=TABLE, Key={"pk": old["pk"], "sk": old["sk"]})
    for item in items:
        dynamodb.put_item(TableName=TABLE, Item={k: {"N": str(v)} if k == "n" else {"S": v} for k, v in item.items()})
    fast = [_every_page(dynamodb, query) for query in queries]
    with monkeypatch.context() as mp:
        mp.setattr(Table, "query", Table.query.original)  # type: ignore[attr-defined]
        mp.setattr(Table, "all_items", Table.all_items.original)  # type: ignore[attr-defined]
        assert not getattr(Table.query, "_local_partition_query", False)
        moto = [_every_page(dynamodb, query) for query in queries]
    assert fast == moto


def test_the_patch_is_what_the_suite_runs(dynamodb: Any) -> None:
    assert getattr(Table.query, "_local_partition_query", False)
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "q"}, "sk": {"S": "1"}, "gpk": {"S": "gq"}, "gsk": {"S": "1"}})
    scan = dynamodb.scan(TableName=TABLE)["Items"]
    assert {"pk": {"S": "q"}, "sk": {"S": "1"}, "gpk": {"S": "gq"}, "gsk": {"S": "1"}} in scan
    assert dynamodb.query(TableName=TABLE, KeyConditionExpression="pk = :h",
                          ExpressionAttributeValues={":h": {"S": "q"}})["Count"] == 1
    assert dynamodb.query(TableName=TABLE, IndexName="ByG", KeyConditionExpression="gpk = :h",
                          ExpressionAttributeValues={":h": {"S": "gq"}})["Count"] == 1


def test_a_kept_update_expression_applies_each_call_its_own_values(dynamodb: Any) -> None:
    expression = ("SET #a = :a, #e = list_append(if_not_exists(#e, :empty), :event), "
                  "#n = if_not_exists(#n, :zero) + :one")
    for round_ in range(3):
        for key in ("u1", "u2"):
            dynamodb.update_item(
                TableName=TABLE, Key={"pk": {"S": key}, "sk": {"S": "s"}}, UpdateExpression=expression,
                ExpressionAttributeNames={"#a": "a", "#e": "events", "#n": "n"},
                ExpressionAttributeValues={":a": {"S": f"{key}-{round_}"}, ":empty": {"L": []},
                                           ":event": {"L": [{"S": f"{key}-{round_}"}]},
                                           ":zero": {"N": "0"}, ":one": {"N": "1"}})
    for key in ("u1", "u2"):
        item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": key}, "sk": {"S": "s"}})["Item"]
        assert item["a"] == {"S": f"{key}-2"}
        assert item["events"] == {"L": [{"S": f"{key}-{r}"} for r in range(3)]}
        assert item["n"] == {"N": "3"}


def test_a_kept_expression_is_still_refused_with_names_that_make_it_invalid(dynamodb: Any) -> None:
    from botocore.exceptions import ClientError

    key = {"pk": {"S": "v1"}, "sk": {"S": "s"}}
    values = {":v": {"S": "x"}, ":w": {"S": "y"}}
    expression = "SET #a = :v, #b = :w"
    for _ in range(2):
        dynamodb.update_item(TableName=TABLE, Key=key, UpdateExpression=expression,
                             ExpressionAttributeNames={"#a": "a", "#b": "b"}, ExpressionAttributeValues=values)
    for names in ({"#a": "a", "#b": "a"}, {"#a": "a", "#b": "sk"}):  # the same path twice; a key attribute
        with pytest.raises(ClientError) as refused:
            dynamodb.update_item(TableName=TABLE, Key=key, UpdateExpression=expression,
                                 ExpressionAttributeNames=names, ExpressionAttributeValues=values)
        assert refused.value.response["Error"]["Code"] == "ValidationException"


def test_a_kept_condition_is_judged_each_time_with_its_own_values(dynamodb: Any) -> None:
    from botocore.exceptions import ClientError

    key = {"pk": {"S": "c1"}, "sk": {"S": "s"}}
    dynamodb.put_item(TableName=TABLE, Item={**key, "status": {"S": "pending"}})
    condition = "attribute_exists(pk) AND #s IN (:a, :b)"
    for expected, passes in (("pending", True), ("sent", False), ("sending", True), ("pending", False)):
        kwargs = {"TableName": TABLE, "Key": key, "UpdateExpression": "SET #s = :n", "ConditionExpression": condition,
                  "ExpressionAttributeNames": {"#s": "status"},
                  "ExpressionAttributeValues": {":a": {"S": expected}, ":b": {"S": "none"},
                                                ":n": {"S": "sending"}}}
        if passes:
            dynamodb.update_item(**kwargs)
        else:
            with pytest.raises(ClientError, match="ConditionalCheckFailed"):
                dynamodb.update_item(**kwargs)
