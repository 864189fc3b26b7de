"""Local AWS services for the handlers: moto's server in-process, and the template's tables created in it.

Why: handlers reach DynamoDB, SSM and the rest through the standard
`AWS_ENDPOINT_URL*` variables, so they need a real HTTP endpoint. moto's
`ThreadedMotoServer` provides one on a free 127.0.0.1 port with no Docker;
`--dynamodb-endpoint` points DynamoDB at DynamoDB Local or AWS instead (moto
still serves SSM and the rest). Tables are created from their CloudFormation
definitions, keys, indexes and TTL included; existing tables are kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from .cfn import REGION
from .lambda_runtime import FAKE_CREDENTIALS
from .template import TableSpec


def aws_client(service: str, endpoint_url: str) -> Any:
    """A boto3 client for a local endpoint, with the gateway's fake credentials."""
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30),
    )


@dataclass
class LocalAws:
    """The endpoints the functions use: `endpoint` (moto, every service) and `dynamodb_endpoint`."""

    endpoint: str
    dynamodb_endpoint: str
    _server: Any = field(default=None, repr=False)

    @classmethod
    def start(cls, dynamodb_endpoint: str | None = None) -> "LocalAws":
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per handler call
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        return cls(endpoint=endpoint, dynamodb_endpoint=dynamodb_endpoint or endpoint, _server=server)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self, service: str) -> Any:
        return aws_client(service, self.dynamodb_endpoint if service == "dynamodb" else self.endpoint)

    def env(self) -> dict[str, str]:
        """The standard boto3 endpoint variables for the functions' environment."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_endpoint}

    def create_tables(self, tables: list[TableSpec]) -> list[str]:
        """Create the template's tables (missing ones only) and enable TTL; returns the names created."""
        ddb = self.client("dynamodb")
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
