"""The fault layer itself (tests/dynamodb_faults.py), driven by a plain botocore client."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.dynamodb_faults import DynamoDBFaults, reversed_between_error

TABLE = "things"
INDEX = "by-group"
_SESSION = botocore.session.get_session()  # loads the service model once for all the clients


def make_client(endpoint: str, total_max_attempts: int = 5) -> Any:
    """Like the app's client: in botocore, max_attempts 4 means 4 retries, 5 attempts in all."""
    return _SESSION.create_client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(retries={"mode": "standard", "total_max_attempts": total_max_attempts}),
    )


@pytest.fixture
def bare(moto_server):
    """A client on the moto server without the layer, and a fresh `things` table."""
    moto_server.reset()
    client = make_client(moto_server.endpoint)
    client.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk", "group")
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": INDEX,
                "KeySchema": [
                    {"AttributeName": "group", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    return client


@pytest.fixture
def layer():
    return DynamoDBFaults()


@pytest.fixture
def db(moto_server, bare, layer):
    """A client on the same server with the layer installed."""
    client = make_client(moto_server.endpoint)
    layer.install(client)
    yield client
    layer.uninstall()


def key(pk: str, sk: str = "0") -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def put(client: Any, pk: str, sk: str = "0", **attributes: str) -> None:
    extra = {name: {"S": value} for name, value in attributes.items()}
    client.put_item(TableName=TABLE, Item={**key(pk, sk), **extra})


def error_code(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


# 1. LastEvaluatedKey on every full page


PAGES = {
    "query": {"KeyConditionExpression": "pk = :v", "ExpressionAttributeValues": {":v": {"S": "a"}}},
    "index query": {
        "IndexName": INDEX,
        "KeyConditionExpression": "#g = :v",
        "ExpressionAttributeNames": {"#g": "group"},
        "ExpressionAttributeValues": {":v": {"S": "g"}},
    },
    "scan": {},
}


@pytest.mark.parametrize("kind", PAGES)
def test_a_full_last_page_has_a_key_and_the_page_after_it_is_empty(bare, db, layer, kind):
    for sk in ("1", "2", "3"):
        put(bare, "a", sk, group="g")
    operation = bare.scan if kind == "scan" else bare.query
    request = {"TableName": TABLE, "Limit": 3, **PAGES[kind]}
    assert "LastEvaluatedKey" not in operation(**request)  # moto alone

    page = (db.scan if kind == "scan" else db.query)(**request)

    expected = {**key("a", "3"), **({"group": {"S": "g"}} if kind == "index query" else {})}
    assert (page["Count"], page["LastEvaluatedKey"]) == (3, expected)
    assert page["ResponseMetadata"]["RetryAttempts"] == 0  # the CRC32 of the rewritten body holds
    after = (db.scan if kind == "scan" else db.query)(**request, ExclusiveStartKey=page["LastEvaluatedKey"])
    assert (after["Count"], "LastEvaluatedKey" in after) == (0, False)
    assert layer.counts["last_evaluated_keys_added"] == 1


def test_a_page_short_of_the_limit_has_no_key(bare, db):
    for sk in ("1", "2"):
        put(bare, "a", sk)
    page = db.query(TableName=TABLE, Limit=3, **PAGES["query"])
    assert page["Count"] == 2
    assert "LastEvaluatedKey" not in page


# 2. ValidationException on a reversed BETWEEN


def test_a_reversed_between_is_refused_as_dynamodb_does(bare, db, layer):
    put(bare, "a", "2024-01-02")
    request = {
        "TableName": TABLE,
        "KeyConditionExpression": "pk = :p AND sk between :from AND :to",
        "ExpressionAttributeValues": {":p": {"S": "a"}, ":from": {"S": "2024-12"}, ":to": {"S": "2024-01"}},
    }
    assert bare.query(**request)["Count"] == 0  # moto alone: no error, no items

    with pytest.raises(ClientError) as raised:
        db.query(**request)

    assert error_code(raised.value) == "ValidationException"
    assert "requires upper bound to be greater than or equal to lower bound" in str(raised.value)
    assert "lower bound operand: AttributeValue: {S:2024-12}" in str(raised.value)
    assert (layer.counts["reversed_between"], layer.applied["Query"]) == (1, 0)
    ordered = {":p": {"S": "a"}, ":from": {"S": "2024-01"}, ":to": {"S": "2024-12"}}
    assert db.query(**{**request, "ExpressionAttributeValues": ordered})["Count"] == 1


@pytest.mark.parametrize(
    ("low", "high", "refused"),
    [
        ({"N": "10"}, {"N": "9"}, True),
        ({"N": "9"}, {"N": "10"}, False),  # numbers, not strings
        ({"N": "-1"}, {"N": "-1.0"}, False),
        ({"S": "b"}, {"S": "a"}, True),
        ({"S": "B"}, {"S": "a"}, False),  # code points: upper case first
        ({"B": "/A=="}, {"B": "AA=="}, True),  # bytes 0xFC and 0x00, not their base64 text
    ],
)
def test_between_bounds_compare_by_type(low, high, refused):
    body = {
        "KeyConditionExpression": "k = :k AND #s BETWEEN :low AND :high",
        "ExpressionAttributeValues": {":k": {"S": "x"}, ":low": low, ":high": high},
    }
    assert (reversed_between_error(body) is not None) == refused


# 3. TransactionConflict while another transaction holds the item


def transact_put(client: Any, *pks: str) -> None:
    client.transact_write_items(TransactItems=[{"Put": {"TableName": TABLE, "Item": key(pk)}} for pk in pks])


def while_holding(layer: DynamoDBFaults, db: Any, *pks: str) -> threading.Thread:
    """Starts a transaction on `pks` that holds them for 0.5 s; returns once it does."""
    layer.transaction_hold_seconds = 0.5
    thread = threading.Thread(target=transact_put, args=(db, *pks))
    thread.start()
    deadline = time.monotonic() + 2
    while layer.applied["TransactWriteItems"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    layer.transaction_hold_seconds = 0
    return thread


def test_a_transaction_on_an_item_in_another_transaction_is_cancelled(db, layer):
    holder = while_holding(layer, db, "x")

    with pytest.raises(ClientError) as raised:
        db.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": key("y")}},
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": key("x"),
                        "UpdateExpression": "SET n = :n",
                        "ExpressionAttributeValues": {":n": {"N": "1"}},
                    }
                },
            ]
        )
    with pytest.raises(ClientError) as single:
        db.delete_item(TableName=TABLE, Key=key("x"))
    with pytest.raises(ClientError) as read:
        db.transact_get_items(TransactItems=[{"Get": {"TableName": TABLE, "Key": key("x")}}])
    holder.join()

    assert error_code(raised.value) == "TransactionCanceledException"
    assert raised.value.response["CancellationReasons"] == [
        {"Code": "None"},
        {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"},
    ]
    assert error_code(single.value) == "TransactionConflictException"
    assert read.value.response["CancellationReasons"][0]["Code"] == "TransactionConflict"
    assert layer.counts == Counter({"transaction_conflicts": 2, "write_conflicts": 1})
    assert (layer.applied["TransactWriteItems"], layer.applied["DeleteItem"]) == (1, 0)
    transact_put(db, "y", "x")  # the holder is done: no conflict any more


def test_transactions_on_other_items_both_go_through(db, layer):
    holder = while_holding(layer, db, "x")
    transact_put(db, "y")
    db.put_item(TableName=TABLE, Item=key("z"))
    holder.join()
    assert layer.applied == Counter({"TransactWriteItems": 2, "PutItem": 1})
    assert layer.counts == Counter()


@pytest.mark.slow
def test_concurrent_transactions_stay_atomic(bare, db, layer, monkeypatch):
    """moto rolls a failed transaction back by restoring a copy of the whole table, undoing
    whatever other requests wrote meanwhile: the layer lets one request at a time into moto."""

    def update(pk: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": TABLE,
                "Key": key(pk),
                "UpdateExpression": "ADD n :one",
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            }
        }

    def doomed(pk: str) -> dict[str, Any]:
        return {
            "ConditionCheck": {
                "TableName": TABLE,
                "Key": key(pk),
                "ConditionExpression": "attribute_exists(pk)",
            }
        }

    def transaction(i: int) -> str:
        items = [update(f"item-{i}")]
        if i % 2:  # a long transaction that fails last
            items += [update(f"item-{i}-{j}") for j in range(5)] + [doomed(f"missing-{i}")]
        try:
            db.transact_write_items(TransactItems=items)
        except ClientError as error:
            return error_code(error)
        return "ok"

    in_moto, most_in_moto, meter = 0, 0, threading.Lock()
    send = layer._http.send

    def metered_send(request):
        nonlocal in_moto, most_in_moto
        with meter:
            in_moto += 1
            most_in_moto = max(most_in_moto, in_moto)
        try:
            return send(request)
        finally:
            with meter:
                in_moto -= 1

    monkeypatch.setattr(layer._http, "send", metered_send)
    with ThreadPoolExecutor(50) as pool:
        outcomes = Counter(pool.map(transaction, range(50)))

    assert outcomes == Counter({"ok": 25, "TransactionCanceledException": 25})
    assert most_in_moto == 1
    written = bare.scan(TableName=TABLE, FilterExpression="attribute_exists(n)")["Items"]
    assert sorted(item["pk"]["S"] for item in written) == sorted(f"item-{i}" for i in range(0, 50, 2))


# 4. An applied write whose answer is lost


@pytest.mark.parametrize("how", ["500", "disconnect"])
def test_a_lost_answer_is_retried_and_the_write_applied_twice(db, layer, how):
    calls: Counter[str] = Counter()
    db.meta.events.register("before-call.dynamodb", lambda model, **_: calls.update([model.name]))
    layer.lose_answer("PutItem", how=how)

    response = db.put_item(TableName=TABLE, Item=key("a"))

    assert response["ResponseMetadata"]["RetryAttempts"] == 1
    assert layer.applied["PutItem"] == 2
    assert layer.counts["lost_answers"] == 1
    assert calls == Counter({"PutItem": 1})  # before-call counting sees calls, not attempts


def test_a_lost_answer_makes_a_conditional_write_fail_on_its_retry(db, layer):
    layer.lose_answer("PutItem")
    with pytest.raises(ClientError) as raised:
        db.put_item(TableName=TABLE, Item=key("a"), ConditionExpression="attribute_not_exists(pk)")
    assert error_code(raised.value) == "ConditionalCheckFailedException"
    assert db.get_item(TableName=TABLE, Key=key("a"))["Item"] == key("a")  # yet it was written


def test_a_retried_transaction_is_idempotent_by_its_token(db, layer):
    """botocore retries with the ClientRequestToken it generated; DynamoDB then answers the
    first outcome again instead of applying the transaction (and its condition) twice."""
    put_a = {"Put": {"TableName": TABLE, "Item": key("a"), "ConditionExpression": "attribute_not_exists(pk)"}}
    layer.lose_answer("TransactWriteItems")
    db.transact_write_items(TransactItems=[put_a], ClientRequestToken="token-1")
    assert layer.applied["TransactWriteItems"] == 1
    assert layer.counts == Counter({"lost_answers": 1, "idempotent_replays": 1})

    with pytest.raises(ClientError) as raised:
        db.transact_write_items(TransactItems=[put_a, put_a], ClientRequestToken="token-1")
    assert error_code(raised.value) == "IdempotentParameterMismatchException"


def test_without_honouring_tokens_a_retried_transaction_applies_again_as_in_moto(db, layer):
    layer.honour_request_tokens = False
    layer.lose_answer("TransactWriteItems")
    with pytest.raises(ClientError) as raised:
        db.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": key("a"),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            ]
        )
    assert raised.value.response["CancellationReasons"] == [
        {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"}
    ]
    assert layer.applied["TransactWriteItems"] == 2


# 5. UnprocessedItems several times in a row


def test_batch_writes_leave_items_unprocessed_as_often_as_asked(bare, db, layer):
    layer.unprocess_batch_writes(times=3, keep=1)
    pending = {TABLE: [{"PutRequest": {"Item": key(str(i))}} for i in range(5)]}
    left = []
    while pending:
        pending = db.batch_write_item(RequestItems=pending)["UnprocessedItems"]
        left.append(sum(len(requests) for requests in pending.values()))
    assert left == [4, 3, 2, 0]
    assert bare.scan(TableName=TABLE)["Count"] == 5
    assert (layer.counts["unprocessed_batch_writes"], layer.applied["BatchWriteItem"]) == (3, 4)


def test_batch_gets_leave_keys_unprocessed(bare, db, layer):
    for pk in "abc":
        put(bare, pk)
    layer.unprocess_batch_gets(times=2, keep=1)
    pending: dict[str, Any] = {TABLE: {"Keys": [key(pk) for pk in "abc"], "ConsistentRead": True}}
    found, rounds = [], 0
    while pending:
        response = db.batch_get_item(RequestItems=pending)
        found += [item["pk"]["S"] for item in response["Responses"].get(TABLE, [])]
        pending, rounds = response["UnprocessedKeys"], rounds + 1
        assert all(spec["ConsistentRead"] for spec in pending.values())
    assert (sorted(found), rounds) == (["a", "b", "c"], 3)


# 6. Throttling that outlasts botocore's retries


def test_throttling_surfaces_after_the_retries(moto_server, bare, layer):
    client = make_client(moto_server.endpoint, total_max_attempts=2)
    layer.install(client)
    layer.throttle("GetItem")

    with pytest.raises(ClientError) as raised:
        client.get_item(TableName=TABLE, Key=key("a"))
    client.put_item(TableName=TABLE, Item=key("a"))  # only GetItem is throttled
    layer.clear()
    client.get_item(TableName=TABLE, Key=key("a"))

    assert error_code(raised.value) == "ProvisionedThroughputExceededException"
    assert raised.value.response["ResponseMetadata"]["RetryAttempts"] == 1
    assert layer.counts["throttled"] == 2
    assert layer.applied == Counter({"PutItem": 1, "GetItem": 1})


# The conftest fixtures: the layer on the app's client


def test_the_app_client_goes_through_the_layer(dynamodb_faults, faulty_client):
    import app
    from tests.helpers import start_run

    calls: Counter[str] = Counter()  # as tests/test_dynamodb_usage.py counts
    app.parts().dynamodb.meta.events.register(
        "before-call.dynamodb", lambda model, **_: calls.update([model.name])
    )
    dynamodb_faults.lose_answer("TransactWriteItems", how="disconnect")

    start_run(faulty_client)

    assert dynamodb_faults.counts == Counter({"lost_answers": 1, "idempotent_replays": 1})
    assert dynamodb_faults.applied["TransactWriteItems"] == 1
    assert calls["TransactWriteItems"] == 1
    assert "DescribeTable" not in calls  # the layer's own lookups are not the app's calls
