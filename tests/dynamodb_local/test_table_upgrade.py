"""A table kept in `make dev`'s data folder is brought up to a newer template, on DynamoDB Local, items kept.

The data folder outlives template changes: a table made before an index or a stream was added
must gain them at the next start with its items untouched, or the handlers that Query the index
(and the function the stream feeds) fail on a developer's existing history. What UpdateTable
cannot change is rebuilt from a backup in the data folder, and a rebuild cut short anywhere is
finished by the next start.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from parley_local.gateway.template import load_stack
from parley_local.local_aws.tables import RebuildStoppedError, StaleTableError, backup_path, create_tables
from parley_testing.template import TEMPLATE


@dataclass
class Table:
    name: str
    create_args: dict[str, Any] = field(default_factory=dict)
    ttl_attribute: str | None = None


def _messages(name: str) -> Table:
    """The template's messages table (with ByChange), under a test name, with a TTL and a stream to carry over."""
    [spec] = [t for t in load_stack(TEMPLATE).tables if t.logical_id == "MessagesTable"]
    args = {**copy.deepcopy(spec.create_args), "TableName": name,
            "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}}
    assert [i["IndexName"] for i in args["GlobalSecondaryIndexes"]] == ["ByChange"]
    return Table(name, args, "expiresAt")


def _before_by_change(new: Table) -> Table:
    """The messages table as the template made it before ByChange."""
    args = copy.deepcopy(new.create_args)
    del args["GlobalSecondaryIndexes"]
    args["AttributeDefinitions"] = [a for a in args["AttributeDefinitions"] if a["AttributeName"] != "changedAtMs"]
    return Table(new.name, args, new.ttl_attribute)


def _keys_only_by_change(new: Table) -> Table:
    """ByChange with another projection: UpdateTable cannot change that, so the table is rebuilt."""
    args = copy.deepcopy(new.create_args)
    args["GlobalSecondaryIndexes"][0]["Projection"] = {"ProjectionType": "KEYS_ONLY"}
    return Table(new.name, args, new.ttl_attribute)


def _items(count: int = 60) -> list[dict[str, Any]]:
    """Items of several shapes: binary, sets, maps and lists, a TTL attribute, a change time on some."""
    items = []
    for i in range(count):
        item: dict[str, Any] = {"roomId": {"S": f"room-{i % 3}"}, "messageId": {"S": f"m{i:04d}"},
                                "text": {"S": f"hello {i} ✓"}, "version": {"N": str(i + 1)}}
        if i % 2:
            item["changedAtMs"] = {"N": str(1_700_000_000_000 + i)}
        if i % 3 == 0:
            item["blob"] = {"B": bytes(range(i % 7, 40))}
            item["blobs"] = {"BS": [b"\x00\x01", bytes([i % 256, 255])]}
        if i % 4 == 0:
            item["reactions"] = {"M": {"👍": {"SS": ["alice", "bob"]}, "n": {"NS": ["1", "2.5"]},
                                       "deep": {"M": {"l": {"L": [{"S": "x"}, {"B": b"\xff"}, {"NULL": True}, {"BOOL": False}]}}}}}
        if i % 5 == 0:
            item["expiresAt"] = {"N": str(1_600_000_000 + i)}  # already past: DynamoDB Local keeps it, so must we
        items.append(item)
    return items


def _put(ddb: Any, table: str, items: list[dict[str, Any]]) -> None:
    for item in items:
        ddb.put_item(TableName=table, Item=item)


def _canon(value: Any) -> Any:
    """An item or AttributeValue with its sets in order (a set's order is DynamoDB's to choose)."""
    if isinstance(value, dict):
        return {k: sorted(v) if k in ("SS", "NS", "BS") else _canon(v) for k, v in value.items()}
    return [_canon(v) for v in value] if isinstance(value, list) else value


def _sorted(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_canon(item) for item in sorted(items, key=lambda item: (item["roomId"]["S"], item["messageId"]["S"]))]


def _all(ddb: Any, table: str) -> list[dict[str, Any]]:
    return _sorted([item for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True) for item in page["Items"]])


def _changed_in_room(ddb: Any, table: str, room: str) -> list[dict[str, Any]]:
    return [_canon(item) for item in ddb.query(TableName=table, IndexName="ByChange", KeyConditionExpression="roomId = :r",
                                               ExpressionAttributeValues={":r": {"S": room}})["Items"]]


def _expected_changed(items: list[dict[str, Any]], room: str) -> list[dict[str, Any]]:
    return [_canon(item) for item in sorted((item for item in items if item["roomId"]["S"] == room and "changedAtMs" in item),
                                            key=lambda item: int(item["changedAtMs"]["N"]))]


class Crash(BaseException):
    """The process dying at a call (a kill, a power cut): nothing after it runs, no handler sees it."""


class CrashingClient:
    """The DynamoDB client, dying at the `nth` call of `operation`."""

    def __init__(self, ddb: Any, operation: str, nth: int = 1):
        self._ddb, self._operation, self._left = ddb, operation, nth

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._ddb, name)
        if name != self._operation:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._left -= 1
            if self._left == 0:
                raise Crash(name)
            return attr(*args, **kwargs)
        return call


class CountingClient:
    """The DynamoDB client, counting the calls that could change a table or read it whole."""

    WRITES = {"create_table", "delete_table", "update_table", "update_time_to_live", "batch_write_item", "put_item", "scan"}

    def __init__(self, ddb: Any):
        self._ddb = ddb
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name in self.WRITES:
            self.calls.append(name)
        if name == "get_paginator":
            return lambda op: (self.calls.append(op), self._ddb.get_paginator(op))[1]
        return getattr(self._ddb, name)


def test_a_kept_table_gains_the_templates_index_in_place_with_every_item(ddb: Any, tmp_path: Path) -> None:
    new = _messages(f"gains-{uuid.uuid4().hex[:8]}")
    old = _before_by_change(new)
    assert create_tables(ddb, [old]) == [old.name]
    items = _items()
    _put(ddb, old.name, items)
    created = ddb.describe_table(TableName=old.name)["Table"]["CreationDateTime"]
    lines: list[str] = []

    assert create_tables(ddb, [new], tmp_path, lines.append) == [], "an existing table is kept, not created again"

    assert lines == [f"table {new.name} gained index ByChange in place: every item kept"]
    described = ddb.describe_table(TableName=new.name)["Table"]
    assert described["CreationDateTime"] == created, "added in place, not rebuilt"
    assert [(i["IndexName"], i["IndexStatus"]) for i in described["GlobalSecondaryIndexes"]] == [("ByChange", "ACTIVE")]
    assert _all(ddb, new.name) == _sorted(items)
    for room in ("room-0", "room-1"):
        assert _changed_in_room(ddb, new.name, room) == _expected_changed(items, room), "the index holds the old items"
    later = {"roomId": {"S": "room-0"}, "messageId": {"S": "later"}, "changedAtMs": {"N": "1800000000000"}}
    ddb.put_item(TableName=new.name, Item=later)  # DynamoDB Local takes writes again once the index is ACTIVE
    assert _changed_in_room(ddb, new.name, "room-0")[-1] == later
    assert list(tmp_path.iterdir()) == [], "no backup: nothing was copied"


def test_what_update_table_cannot_change_is_rebuilt_with_every_item_stream_and_ttl(ddb: Any, tmp_path: Path) -> None:
    new = _messages(f"rebuilt-{uuid.uuid4().hex[:8]}")
    old = _keys_only_by_change(new)
    create_tables(ddb, [old])
    items = _items()
    _put(ddb, old.name, items)
    before = ddb.describe_table(TableName=old.name)["Table"]
    lines: list[str] = []

    assert create_tables(ddb, [new], tmp_path, lines.append) == []

    assert lines == [f"table {new.name} rebuilt for the template (index ByChange's key or projection changed): 60 items kept"]
    after = ddb.describe_table(TableName=new.name)["Table"]
    assert after["CreationDateTime"] > before["CreationDateTime"]
    assert after["GlobalSecondaryIndexes"][0]["Projection"] == {"ProjectionType": "ALL"}
    assert after["StreamSpecification"] == new.create_args["StreamSpecification"]
    assert after["LatestStreamArn"] != before["LatestStreamArn"], "a new table, a new stream"
    ttl = ddb.describe_time_to_live(TableName=new.name)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expiresAt")
    assert _all(ddb, new.name) == _sorted(items)
    assert _changed_in_room(ddb, new.name, "room-2") == _expected_changed(items, "room-2"), "whole items, as ALL projects"
    assert list(tmp_path.iterdir()) == [], "the backup is removed once every item is back"


@pytest.mark.parametrize(("operation", "nth"), [
    ("delete_table", 1),  # the backup made, the old table still there
    ("create_table", 1),  # the old table deleted, the new one not made
    ("batch_write_item", 2),  # the new table made, one batch of items back
])
def test_a_rebuild_cut_short_is_finished_by_the_next_start_with_nothing_lost(
        ddb: Any, tmp_path: Path, operation: str, nth: int) -> None:
    new = _messages(f"resumed-{uuid.uuid4().hex[:8]}")
    old = _keys_only_by_change(new)
    create_tables(ddb, [old])
    items = _items()
    _put(ddb, old.name, items)

    with pytest.raises(Crash):
        create_tables(CrashingClient(ddb, operation, nth), [new], tmp_path)
    assert backup_path(tmp_path, new.name).exists()
    assert sorted(tmp_path.iterdir()) == [backup_path(tmp_path, new.name)], "no half-written file besides it"

    lines: list[str] = []
    assert create_tables(ddb, [new], tmp_path, lines.append) == []

    assert lines == [f"table {new.name}: finished the rebuild an interrupted start began "
                     f"(from {backup_path(tmp_path, new.name)}): 60 items kept"]
    assert _all(ddb, new.name) == _sorted(items)
    assert ddb.describe_table(TableName=new.name)["Table"]["GlobalSecondaryIndexes"][0]["Projection"] == {"ProjectionType": "ALL"}
    assert _changed_in_room(ddb, new.name, "room-1") == _expected_changed(items, "room-1")
    assert list(tmp_path.iterdir()) == []


def test_a_rebuild_that_fails_after_its_backup_says_where_the_items_are(ddb: Any, tmp_path: Path) -> None:
    new = _messages(f"failed-{uuid.uuid4().hex[:8]}")
    old = _keys_only_by_change(new)
    create_tables(ddb, [old])
    _put(ddb, old.name, _items(3))

    class Refusing(CrashingClient):
        def __getattr__(self, name: str) -> Any:
            if name == "create_table":
                def refuse(**_: Any) -> None:
                    raise OSError("connection reset")
                return refuse
            return getattr(self._ddb, name)

    with pytest.raises(RebuildStoppedError, match=r"every item is in .*parley-rebuild\..*\.jsonl; start parley dev again"):
        create_tables(Refusing(ddb, "create_table"), [new], tmp_path)
    assert create_tables(ddb, [new], tmp_path) == [] and len(_all(ddb, new.name)) == 3


def test_an_up_to_date_table_is_left_as_it_is(ddb: Any, tmp_path: Path) -> None:
    new = _messages(f"current-{uuid.uuid4().hex[:8]}")
    create_tables(ddb, [new], tmp_path)
    _put(ddb, new.name, _items(5))
    created = ddb.describe_table(TableName=new.name)["Table"]["CreationDateTime"]
    counting, lines = CountingClient(ddb), []

    assert create_tables(counting, [new], tmp_path, lines.append) == []

    assert [call for call in counting.calls if call != "list_tables"] == [], "no copy, no update, no TTL call"
    assert lines == [] and list(tmp_path.iterdir()) == []
    assert ddb.describe_table(TableName=new.name)["Table"]["CreationDateTime"] == created


def test_a_rebuild_is_refused_without_a_data_folder_and_changes_nothing(ddb: Any) -> None:
    """A redeploy while functions write (no backup folder given) must not copy: writes during the copy would be lost."""
    new = _messages(f"redeploy-{uuid.uuid4().hex[:8]}")
    old = _keys_only_by_change(new)
    create_tables(ddb, [old])
    _put(ddb, old.name, _items(2))

    with pytest.raises(StaleTableError, match=r"index ByChange's key or projection changed\): `make dev` rebuilds it"):
        create_tables(ddb, [new])

    described = ddb.describe_table(TableName=old.name)["Table"]
    assert described["GlobalSecondaryIndexes"][0]["Projection"] == {"ProjectionType": "KEYS_ONLY"} and len(_all(ddb, old.name)) == 2


def test_items_the_rebuilt_table_would_refuse_stop_the_start_before_anything_is_deleted(ddb: Any, tmp_path: Path) -> None:
    new = _messages(f"misfit-{uuid.uuid4().hex[:8]}")
    old = _keys_only_by_change(new)
    old.create_args["AttributeDefinitions"] = [{"AttributeName": "roomId", "AttributeType": "S"},
                                               {"AttributeName": "messageId", "AttributeType": "S"},
                                               {"AttributeName": "changedAtMs", "AttributeType": "S"}]
    create_tables(ddb, [old])
    _put(ddb, old.name, [{"roomId": {"S": "r"}, "messageId": {"S": "m"}, "changedAtMs": {"S": "yesterday"}}])

    with pytest.raises(StaleTableError, match=r"1 of its 1 items lack the template's keys or have them of another type"):
        create_tables(ddb, [new], tmp_path)

    assert _all(ddb, old.name) == [{"roomId": {"S": "r"}, "messageId": {"S": "m"}, "changedAtMs": {"S": "yesterday"}}]
    assert list(tmp_path.iterdir()) == []


def test_a_kept_table_gains_the_newer_templates_stream_and_keeps_its_items(ddb: Any) -> None:
    new = _messages(f"upgrade-{uuid.uuid4().hex[:8]}")
    old = Table(new.name, {k: v for k, v in new.create_args.items() if k != "StreamSpecification"}, "expiresAt")
    assert create_tables(ddb, [old]) == [old.name]
    ddb.put_item(TableName=old.name, Item={"roomId": {"S": "lobby"}, "messageId": {"S": "m1"}, "changedAtMs": {"N": "1"}})

    assert create_tables(ddb, [new]) == [], "an existing table is kept, not created again"

    described = ddb.describe_table(TableName=new.name)["Table"]
    assert described["StreamSpecification"]["StreamEnabled"] is True
    assert len(_changed_in_room(ddb, new.name, "lobby")) == 1
    assert create_tables(ddb, [new]) == []  # a second start changes nothing and does not fail
