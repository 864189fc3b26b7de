"""A table kept in `make dev`'s data folder is brought up to a newer template, on DynamoDB Local.

The data folder outlives template changes: a table made before an index or a stream was added
must gain them at the next start, with its items untouched, or the handlers that Query the index
(and the function the stream feeds) fail on a developer's existing history.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from parley_local.local_aws.tables import StaleTableError, create_tables


@dataclass
class Table:
    name: str
    create_args: dict[str, Any] = field(default_factory=dict)
    ttl_attribute: str | None = None


def _old_and_new(name: str) -> tuple[Table, Table]:
    base = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": "roomId", "KeyType": "HASH"}, {"AttributeName": "memberKey", "KeyType": "RANGE"}],
        "AttributeDefinitions": [
            {"AttributeName": "roomId", "AttributeType": "S"},
            {"AttributeName": "memberKey", "AttributeType": "S"},
        ],
    }
    newer = dict(base)
    newer["AttributeDefinitions"] = base["AttributeDefinitions"] + [{"AttributeName": "readerId", "AttributeType": "S"}]
    newer["GlobalSecondaryIndexes"] = [{
        "IndexName": "ByReader",
        "KeySchema": [{"AttributeName": "readerId", "KeyType": "HASH"}, {"AttributeName": "roomId", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "KEYS_ONLY"},
    }]
    newer["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    return Table(name, base, "expiresAt"), Table(name, newer, "expiresAt")


def test_a_kept_table_gains_the_newer_templates_stream_and_keeps_its_items(ddb: Any) -> None:
    old, new = _old_and_new(f"upgrade-{uuid.uuid4().hex[:8]}")
    old.create_args = {**new.create_args}
    old.create_args.pop("StreamSpecification")
    assert create_tables(ddb, [old]) == [old.name]
    ddb.put_item(TableName=old.name, Item={"roomId": {"S": "lobby"}, "memberKey": {"S": "r#alice"}, "readerId": {"S": "alice"}})

    assert create_tables(ddb, [new]) == [], "an existing table is kept, not created again"

    described = ddb.describe_table(TableName=new.name)["Table"]
    assert described["StreamSpecification"]["StreamEnabled"] is True
    ddb.put_item(TableName=new.name, Item={"roomId": {"S": "hall"}, "memberKey": {"S": "r#alice"}, "readerId": {"S": "alice"}})
    items = ddb.query(TableName=new.name, IndexName="ByReader", KeyConditionExpression="readerId = :r",
                      ExpressionAttributeValues={":r": {"S": "alice"}})["Items"]
    assert sorted(item["roomId"]["S"] for item in items) == ["hall", "lobby"], "old and new items are both there"
    assert create_tables(ddb, [new]) == []  # a second start changes nothing and does not fail


def test_a_kept_table_without_the_templates_index_stops_the_start_and_is_left_alone(ddb: Any) -> None:
    old, new = _old_and_new(f"stale-{uuid.uuid4().hex[:8]}")
    create_tables(ddb, [old])
    ddb.put_item(TableName=old.name, Item={"roomId": {"S": "lobby"}, "memberKey": {"S": "r#alice"}})

    with pytest.raises(StaleTableError, match=r"lacks the index\(es\) ByReader"):
        create_tables(ddb, [new])

    described = ddb.describe_table(TableName=old.name)["Table"]
    assert "GlobalSecondaryIndexes" not in described and "StreamSpecification" not in described
    assert ddb.get_item(TableName=old.name, Key={"roomId": {"S": "lobby"}, "memberKey": {"S": "r#alice"}})["Item"]
