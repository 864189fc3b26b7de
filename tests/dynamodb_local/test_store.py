"""The real DynamoDB store (the layer's `DynamoChatStore`, through PynamoDB) against AWS's DynamoDB Local.

What moto cannot prove, pinned to DynamoDB Local's behaviour: conditional writes and the errors
they raise, TTL attributes as epoch seconds, the sparse `ByConnection` index, a room's Query
going past the 1 MB page limit (moto answers it in one page), BatchWriteItem's unprocessed items,
and capacity units computed from item sizes (moto reports 1.0 for everything).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from parley.aws.keys import idempotency_key, rate_counter_key
from parley.core.model import ChatMessage, Member, RequestCharge

def _id() -> str:
    return uuid.uuid4().hex[:12]


def _message(room: str, n: int, client_id: str | None = None) -> Any:
    return ChatMessage(room, f"01J{n:023d}", "alice", "Alice", f"hello {n}", "2026-11-28T21:00:00.000Z", client_id)


def test_conditional_put_writes_once_and_raises_condition_failed(layer, store, ddb):
    tables, _ = layer
    room = f"cond-{_id()}"
    first = _message(room, 1)
    assert store.put_message(first) is True
    again = ChatMessage(room, first.message_id, "mallory", "M", "overwritten?", first.timestamp, None)
    assert store.put_message(again) is False
    item = ddb.get_item(TableName=tables.StoredMessage.Meta.table_name,
                        Key={"roomId": {"S": room}, "messageId": {"S": first.message_id}}, ConsistentRead=True)["Item"]
    assert item["message"] == {"S": "hello 1"} and item["userId"] == {"S": "alice"}
    with pytest.raises(ClientError) as info:  # the error the store recognises, as DynamoDB Local raises it
        ddb.put_item(TableName=tables.StoredMessage.Meta.table_name, Item=item, ConditionExpression="attribute_not_exists(messageId)")
    assert info.value.response["Error"]["Code"] == "ConditionalCheckFailedException"


def test_client_message_id_claim_returns_the_first_message(store):
    room = f"idem-{_id()}"
    first = _message(room, 1, client_id="c-1")
    assert store.claim_client_message_id(first) is None
    retry = _message(room, 2, client_id="c-1")
    assert store.claim_client_message_id(retry) == first


def test_read_cursor_only_moves_forward(store):
    room = f"cursor-{_id()}"
    assert store.advance_read_cursor(room, "alice", "01J0000000000000000000000B") is True
    assert store.advance_read_cursor(room, "alice", "01J0000000000000000000000A") is False  # older: condition fails
    assert store.advance_read_cursor(room, "alice", "01J0000000000000000000000B") is False  # same
    assert store.advance_read_cursor(room, "alice", "01J0000000000000000000000C") is True


def test_ttl_attributes_are_epoch_seconds_and_ttl_is_enabled(layer, store, ddb, ttl_seconds):
    connection_ttl_s, idempotency_ttl_s = ttl_seconds
    tables, _ = layer
    conn, room = f"c{_id()}", f"ttl-{_id()}"
    now = time.time()
    store.add_member(Member(room, conn, "alice", "Alice", int(now * 1000)))
    store.claim_client_message_id(_message(room, 1, client_id="ttl"))
    assert store.count_request("chat", "alice", 42, 20) == 1
    assert store.count_request("chat", "alice", 42, 20, hits=3) == 4
    # A batch from an environment's ledger arrives with the room's Query, added in one UpdateItem.
    page, total = store.first_page_and_count(room, 10, RequestCharge("chat", "alice", 42, 20, hits=5))
    assert total == 9 and [m.connection_id for m in page.members] == [conn]

    def expires(table: str, key: dict[str, Any]) -> float:
        return float(ddb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]["expiresAt"]["N"])

    assert abs(expires(tables.Membership.Meta.table_name, {"roomId": {"S": room}, "memberKey": {"S": "c#" + conn}})
               - (now + connection_ttl_s)) < 120
    key = idempotency_key("alice", room, "ttl")
    assert abs(expires(tables.IdempotencyRecord.Meta.table_name, {"key": {"S": key}}) - (now + idempotency_ttl_s)) < 120
    assert abs(expires(tables.RateCounter.Meta.table_name, {"key": {"S": rate_counter_key("chat", "alice", 42)}}) - (now + 20)) < 120
    for table in (tables.Membership.Meta.table_name, tables.IdempotencyRecord.Meta.table_name):
        ttl = ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}


def test_by_connection_index_is_sparse(layer, store, ddb):
    tables, _ = layer
    conn, rooms = f"c{_id()}", sorted(f"sparse-{_id()}" for _ in range(3))
    for room in rooms:
        store.add_member(Member(room, conn, "alice", "Alice", 1))
        store.advance_read_cursor(room, "alice", "01J0000000000000000000000A")  # same partition, no connectionId
    assert sorted(store.rooms_of(conn)) == rooms
    page = ddb.query(TableName=tables.Membership.Meta.table_name, IndexName="ByConnection",
                     KeyConditionExpression="connectionId = :c", ExpressionAttributeValues={":c": {"S": conn}})
    assert page["Count"] == 3  # read cursors carry no connectionId: not in the index
    assert {frozenset(item) for item in page["Items"]} == {frozenset({"connectionId", "roomId", "memberKey"})}  # KEYS_ONLY
    store.remove_memberships(conn, rooms)
    assert store.rooms_of(conn) == []
    assert all(not store.is_member(room, conn) for room in rooms)


def _seed_members(ddb: Any, table: str, room: str, count: int, name: str) -> None:
    """BatchWriteItem, 25 at a time, retrying what DynamoDB Local leaves unprocessed."""
    requests = [{"PutRequest": {"Item": {
        "roomId": {"S": room}, "memberKey": {"S": f"c#big{n:06d}"}, "connectionId": {"S": f"big{n:06d}"},
        "userId": {"S": f"user{n}"}, "name": {"S": name}, "joinedAt": {"N": str(n)}, "expiresAt": {"N": str(int(time.time()) + 3600)},
    }}} for n in range(count)]
    for start in range(0, len(requests), 25):
        pending = {table: requests[start:start + 25]}
        for _ in range(10):
            pending = ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if not pending:
                break
        assert not pending


def test_room_members_query_pages_past_1_mb(layer, store, ddb):
    """A room whose memberships exceed one 1 MB Query page: the store reads every page."""
    tables, _ = layer
    table, room, count = tables.Membership.Meta.table_name, f"big-{_id()}", 3000
    _seed_members(ddb, table, room, count, "N" * 300)  # ~400 bytes per item: ~1.2 MB in the partition
    first = ddb.query(TableName=table, KeyConditionExpression="roomId = :r", ExpressionAttributeValues={":r": {"S": room}},
                      ReturnConsumedCapacity="TOTAL")
    assert "LastEvaluatedKey" in first and 0 < first["Count"] < count  # DynamoDB stops at 1 MB (moto does not)
    # capacity from sizes: an eventually consistent read of ~1 MB is ~128 units (moto says 1.0 for any Query)
    assert 100 <= first["ConsumedCapacity"]["CapacityUnits"] <= 130, first["ConsumedCapacity"]
    members = store.room_members_page(room, after=None, limit=None).members
    assert len(members) == count and len({m.connection_id for m in members}) == count


def test_remove_memberships_resends_unprocessed_items(layer, store, monkeypatch):
    """BatchWriteItem may leave items unprocessed (throttling); the store's batch must resend them."""
    tables, _ = layer
    conn, rooms = f"c{_id()}", [f"unproc-{_id()}" for _ in range(5)]
    for room in rooms:
        store.add_member(Member(room, conn, "alice", "Alice", 1))
    connection = tables.Membership._get_connection()
    original = connection.batch_write_item
    calls: list[int] = []

    def first_call_leaves_four(*args: Any, **kwargs: Any) -> Any:
        deletes = list(kwargs.get("delete_items") or [])
        calls.append(len(deletes))
        if len(calls) == 1:
            original(*args, **{**kwargs, "delete_items": deletes[:1]})
            return {"UnprocessedItems": {tables.Membership.Meta.table_name: [{"DeleteRequest": {"Key": k}} for k in deletes[1:]]}}
        return original(*args, **kwargs)

    monkeypatch.setattr(connection, "batch_write_item", first_call_leaves_four)
    store.remove_memberships(conn, rooms)
    assert calls == [5, 4]
    assert store.rooms_of(conn) == []


def test_delivery_claims_answer_only_the_connections_never_claimed(layer, store, ddb):
    tables, _ = layer
    delivery = f"01J{_id()}"
    assert store.claim_deliveries(delivery, 0, ["c1", "c2"]) == ["c1", "c2"]
    assert store.claim_deliveries(delivery, 0, ["c2", "c3", "c1", "c4"]) == ["c3", "c4"]  # a retried shard
    assert store.claim_deliveries(delivery, 0, ["c1", "c4"]) == []
    assert store.claim_deliveries(delivery, 1, ["c1"]) == ["c1"]  # another shard's claims are its own
    assert store.claim_deliveries(delivery, 0, []) == []
    key = {"key": {"S": f"fanout#{delivery}#0"}}
    item = ddb.get_item(TableName=tables.FanoutClaim.Meta.table_name, Key=key, ConsistentRead=True)["Item"]
    assert set(item["claimed"]["SS"]) == {"c1", "c2", "c3", "c4"}
    assert int(item["expiresAt"]["N"]) > time.time() + 3600  # expired by TTL, a day later


def test_membership_check_is_sent_with_the_counter(store):
    """A change's rate and membership checks (`membership_and_count`): one GetItem and one UpdateItem."""
    room, conn = f"member-{_id()}", f"c{_id()}"
    store.add_member(Member(room, conn, "alice", "Alice", int(time.time() * 1000)))
    charge = RequestCharge("chat", f"alice-{_id()}", 42, 20, hits=2)
    assert store.membership_and_count(room, conn, charge) == (True, 2)
    assert store.membership_and_count(room, f"c{_id()}", charge) == (False, 4)


def test_a_message_is_never_put_over_a_changed_copy(store):
    """Two attempts of one clientMessageId store the same message; the later put finds it and leaves
    what the room did to it meanwhile (a reaction, its version) as it is."""
    room = f"twice-{_id()}"
    message = _message(room, 1, client_id="m-1")
    assert store.put_message(message) is True
    assert store.react(room, message.message_id, "bob", "\N{THUMBS UP SIGN}", remove=False, max_distinct=20,
                       at_ms=int(time.time() * 1000)).changed
    assert store.put_message(message) is False
    stored = store.stored_message(room, message.message_id)
    assert (stored.reactions, stored.version, stored.text) == ({"\N{THUMBS UP SIGN}": frozenset({"bob"})}, 2, message.text)


def test_a_claim_moves_only_from_the_message_it_points_at(store):
    room = f"moved-{_id()}"
    first, later, other = _message(room, 1, client_id="m-1"), _message(room, 2, client_id="m-1"), _message(room, 3, client_id="m-1")
    assert store.claim_client_message_id(first) is None
    assert store.stored_message(room, first.message_id) is None
    assert store.move_claim(first, later) is None
    moved = store.claim_client_message_id(other)
    assert (moved.message_id, moved.text) == (later.message_id, first.text)
    assert store.move_claim(first, other) == moved  # refused: it points at `later` now
    store.put_message(later)
    assert store.stored_message(room, later.message_id) == later
