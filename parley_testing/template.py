"""The project's template.yaml as data, read with the gateway's CloudFormation loader, and its
tables created in a local DynamoDB under test names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parley_local.gateway.cfn import load_yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
LAYER = ROOT / "layers" / "common" / "python"


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as plain dicts, short-form tags as `Ref` / `Fn::*` keys (intrinsics not resolved)."""
    return load_yaml(path)


def create_tables_from_template(client: Any, template: dict[str, Any], names_by_id: dict[str, str] | None = None) -> dict[str, str]:
    """Create every AWS::DynamoDB::Table of the template, named `names_by_id[LogicalId]` or
    `test-<LogicalId>`; returns logical id -> table name."""
    names = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::DynamoDB::Table":
            continue
        props = resource["Properties"]
        name = (names_by_id or {}).get(logical_id, f"test-{logical_id}")
        args: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if props.get("GlobalSecondaryIndexes"):
            args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        client.create_table(**args)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            client.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
            )
        names[logical_id] = name
    return names
