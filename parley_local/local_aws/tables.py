"""Create the template's DynamoDB tables in a local DynamoDB, whichever serves it.

Why apart from the servers: moto and DynamoDB Local take the same CreateTable and
UpdateTimeToLive calls; only the endpoint differs.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence


class TableDefinition(Protocol):
    """What the template says about one table (`parley_local.gateway.template.TableSpec`)."""

    name: str
    create_args: dict[str, Any]
    ttl_attribute: str | None


def create_tables(ddb: Any, tables: Sequence[TableDefinition]) -> list[str]:
    """Create the missing tables and enable TTL; existing tables are kept. Returns the names created."""
    existing: set[str] = set()
    for page in ddb.get_paginator("list_tables").paginate():
        existing.update(page.get("TableNames", []))
    created: list[str] = []
    for table in tables:
        if table.name not in existing:
            ddb.create_table(**table.create_args)
            ddb.get_waiter("table_exists").wait(TableName=table.name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
            created.append(table.name)
        if table.ttl_attribute:
            current = ddb.describe_time_to_live(TableName=table.name).get("TimeToLiveDescription", {})
            if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                ddb.update_time_to_live(
                    TableName=table.name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
                )
    return created
