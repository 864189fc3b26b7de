"""Create the template's DynamoDB tables in a local DynamoDB, whichever serves it.

Why apart from the servers: moto and DynamoDB Local take the same CreateTable and
UpdateTimeToLive calls; only the endpoint differs.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, Sequence


class TableDefinition(Protocol):
    """What the template says about one table (`parley_local.gateway.template.TableSpec`)."""

    name: str
    create_args: dict[str, Any]
    ttl_attribute: str | None


def create_tables(ddb: Any, tables: Sequence[TableDefinition]) -> list[str]:
    """Create the missing tables and enable TTL; existing tables are kept, brought up to the template.

    Returns the names created. The tables are independent, so they are made at once (one thread
    each, one thread-safe client): it is on the path to `parley dev`'s ready line.
    """
    existing: set[str] = set()
    for page in ddb.get_paginator("list_tables").paginate():
        existing.update(page.get("TableNames", []))
    with ThreadPoolExecutor(max(1, min(len(tables), 8)), thread_name_prefix="create-table") as pool:
        made = list(pool.map(lambda table: _make_table(ddb, table, table.name not in existing), tables))
    return [table.name for table, new in zip(tables, made) if new]


def _make_table(ddb: Any, table: TableDefinition, missing: bool) -> bool:
    if missing:
        ddb.create_table(**table.create_args)
        _wait_active(ddb, table.name)
    else:
        upgrade_table(ddb, table)
    if table.ttl_attribute:
        current = ddb.describe_time_to_live(TableName=table.name).get("TimeToLiveDescription", {})
        if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            ddb.update_time_to_live(
                TableName=table.name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
            )
    return missing


class StaleTableError(Exception):
    """A kept table lacks something the template declares that cannot be added in place."""


def upgrade_table(ddb: Any, table: TableDefinition) -> list[str]:
    """Bring a kept table up to a newer template: add its stream; refuse a missing index.

    Why: `make dev` keeps the tables in a data folder across restarts, so a table made by an older
    template may lack the stream a function is fed by (added here, items untouched), or an index a
    handler Queries. DynamoDB Local fails every later request on a table that gained an index
    through UpdateTable (seen with the 2026-01-16 release), so a missing index stops the start
    with the fix instead of leaving a stack whose requests fail. Returns what was added.
    """
    described = ddb.describe_table(TableName=table.name)["Table"]
    present = {index["IndexName"] for index in described.get("GlobalSecondaryIndexes", [])}
    missing = [index["IndexName"] for index in table.create_args.get("GlobalSecondaryIndexes", []) if index["IndexName"] not in present]
    if missing:
        raise StaleTableError(
            f"table {table.name} was made by an older template: it lacks the index(es) {', '.join(missing)}"
        )
    added: list[str] = []
    wanted_stream = table.create_args.get("StreamSpecification") or {}
    if wanted_stream.get("StreamEnabled") and not (described.get("StreamSpecification") or {}).get("StreamEnabled"):
        ddb.update_table(TableName=table.name, StreamSpecification=wanted_stream)
        _wait_active(ddb, table.name)
        added.append("stream")
    return added


def _wait_active(ddb: Any, name: str) -> None:
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
