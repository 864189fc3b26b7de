"""Fixtures for the DynamoDB Local fidelity suite: one AWS DynamoDB Local (in memory) for the session.

DynamoDB Local comes from `make test` (a JRE from Debian's packages, the npm package pinned in
parley_local/local_aws/dynamodb-local). Without it the suite is skipped on a developer machine
and fails in CI (CI=true), like the browser suite.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Iterator

import pytest

from parley_local.local_aws.account import aws_client
from parley_local.local_aws.dynamodb_local import DynamoDBLocal, DynamoDBLocalError
from parley_testing.template import create_tables_from_template, load_template


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    try:
        ddb = DynamoDBLocal.start()
    except DynamoDBLocalError as exc:
        _unavailable(str(exc))
    yield ddb
    ddb.stop()


@pytest.fixture(scope="session")
def ddb(dynamodb_local: DynamoDBLocal) -> Any:
    """A low-level boto3 DynamoDB client on DynamoDB Local (for checks the store does not make)."""
    return aws_client("dynamodb", dynamodb_local.endpoint)


# ---- the layer's store on DynamoDB Local (test_store.py, test_store_rooms.py) ------------------

CONNECTION_TTL_S = 7500
IDEMPOTENCY_TTL_S = 86400


def _models(tables: Any) -> list[type]:
    return [m for _, m in inspect.getmembers(tables, inspect.isclass)
            if issubclass(m, tables.Model) and m is not tables.Model and hasattr(m, "Meta")]


@pytest.fixture(scope="module")
def layer(dynamodb_local: DynamoDBLocal, ddb: Any) -> Iterator[tuple[Any, Any]]:
    """(parley.aws.tables, parley.aws.dynamodb_store) with every model talking to DynamoDB Local, tables created from template.yaml."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(key, value)
    import parley.aws.dynamodb_store as store_module
    import parley.aws.tables as tables

    saved = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb_local.endpoint
    models = _models(tables)
    for model in models:
        model._connection = None  # a client made earlier (e.g. under moto) must not be reused
    names = {
        "MembershipsTable": tables.Membership.Meta.table_name,
        "MessagesTable": tables.StoredMessage.Meta.table_name, "IdempotencyTable": tables.IdempotencyRecord.Meta.table_name,
    }
    existing = set(ddb.list_tables()["TableNames"])
    if not set(names.values()) <= existing:
        create_tables_from_template(ddb, load_template(), names)
    try:
        yield tables, store_module
    finally:
        if saved is None:
            os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
        else:
            os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = saved
        for model in models:
            model._connection = None


@pytest.fixture
def ttl_seconds() -> tuple[int, int]:
    """(connection, idempotency) TTLs the `store` fixture is made with."""
    return CONNECTION_TTL_S, IDEMPOTENCY_TTL_S


@pytest.fixture
def store(layer: tuple[Any, Any]) -> Any:
    return layer[1].DynamoChatStore(CONNECTION_TTL_S, IDEMPOTENCY_TTL_S)
