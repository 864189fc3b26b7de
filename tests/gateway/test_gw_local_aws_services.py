"""SSM served by the gateway, and AWS calls for other services forwarded (moto started on demand).

Over real sockets with botocore, as a function's unchanged code would call them: the workers get
`AWS_ENDPOINT_URL_SSM` and `AWS_ENDPOINT_URL` = the gateway's port.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Iterator

import aiohttp
import pytest
from botocore.exceptions import ClientError

from parley_local.local_aws.account import aws_client
from parley_local.local_aws.other_services import signing_service
from parley_testing.gateway_thread import MAIN_TEMPLATE, RunningGateway


@pytest.fixture(scope="module")
def bare_gw(gw: RunningGateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """A gateway whose DynamoDB is external (the session gateway's moto), so it starts no moto of its own."""
    g = RunningGateway(MAIN_TEMPLATE, tmp_path_factory.mktemp("records-bare"), stack_name="bare", prewarm=False,
                       dynamodb_endpoint=gw.gateway.aws.dynamodb_endpoint).start()
    yield g
    g.stop()


def _code(error: ClientError) -> str:
    return error.response["Error"]["Code"]


def test_parameters_are_put_read_versioned_and_deleted(gw: RunningGateway):
    ssm = aws_client("ssm", gw.gateway.http_url)
    name = "/tests/ssm/db-url"
    created = ssm.put_parameter(Name=name, Value="postgres://a", Type="String")
    assert (created["Version"], created["Tier"]) == (1, "Standard")
    with pytest.raises(ClientError) as refused:
        ssm.put_parameter(Name=name, Value="postgres://b", Type="String")
    assert _code(refused.value) == "ParameterAlreadyExists"
    assert ssm.get_parameter(Name=name)["Parameter"]["Value"] == "postgres://a"  # the refusal changed nothing
    assert ssm.put_parameter(Name=name, Value="postgres://b", Overwrite=True)["Version"] == 2  # type kept
    got = ssm.get_parameter(Name=name)["Parameter"]
    assert (got["Value"], got["Type"], got["Version"]) == ("postgres://b", "String", 2)
    assert got["ARN"] == "arn:aws:ssm:us-east-1:123456789012:parameter/tests/ssm/db-url"
    assert ssm.get_parameter(Name=got["ARN"])["Parameter"]["Value"] == "postgres://b"
    assert ssm.get_parameter(Name=f"{name}:2")["Parameter"]["Version"] == 2
    with pytest.raises(ClientError) as old:
        ssm.get_parameter(Name=f"{name}:1")
    assert _code(old.value) == "ParameterVersionNotFound"
    both = ssm.get_parameters(Names=[name, "/tests/ssm/missing"])
    assert [p["Name"] for p in both["Parameters"]] == [name] and both["InvalidParameters"] == ["/tests/ssm/missing"]
    ssm.delete_parameter(Name=name)
    with pytest.raises(ClientError) as gone:
        ssm.get_parameter(Name=name)
    assert _code(gone.value) == "ParameterNotFound"
    with pytest.raises(ClientError) as twice:
        ssm.delete_parameter(Name=name)
    assert _code(twice.value) == "ParameterNotFound"


def test_a_secure_string_is_readable_only_with_decryption(gw: RunningGateway):
    ssm = aws_client("ssm", gw.gateway.http_url)
    ssm.put_parameter(Name="/tests/ssm/token", Value="s3cret-value", Type="SecureString", Overwrite=True)
    assert ssm.get_parameter(Name="/tests/ssm/token", WithDecryption=True)["Parameter"]["Value"] == "s3cret-value"
    hidden = ssm.get_parameter(Name="/tests/ssm/token")["Parameter"]["Value"]
    assert "s3cret" not in hidden and hidden


@pytest.mark.parametrize("name, value, type_", [
    ("bad name with spaces", "v", "String"),
    ("/aws/reserved", "v", "String"),
    ("/tests/ssm/x", "", "String"),
    ("/tests/ssm/x", "v" * 4097, "String"),
    ("/tests/ssm/x", "v", "Binary"),
])
def test_bad_parameters_get_a_validation_error_and_change_nothing(gw: RunningGateway, name: str, value: str, type_: str):
    ssm = aws_client("ssm", gw.gateway.http_url)
    with pytest.raises(ClientError) as refused:
        ssm.put_parameter(Name=name, Value=value, Type=type_)
    assert _code(refused.value) == "ValidationException"
    with pytest.raises(ClientError) as absent:
        ssm.get_parameter(Name="/tests/ssm/x")
    assert _code(absent.value) == "ParameterNotFound"


def test_an_operation_the_local_ssm_does_not_serve_says_which_it_does(gw: RunningGateway):
    ssm = aws_client("ssm", gw.gateway.http_url)
    with pytest.raises(ClientError) as refused:
        ssm.describe_parameters()
    assert _code(refused.value) == "UnknownOperationException"
    assert "GetParameter" in str(refused.value) and "DescribeParameters" in str(refused.value)


async def test_an_unsigned_post_to_the_root_is_the_gateways_403(gw: RunningGateway):
    async with aiohttp.ClientSession() as http:
        async with http.post(gw.gateway.http_url + "/", data=json.dumps({"Name": "x"})) as answer:
            assert answer.status == 403


async def test_another_service_starts_moto_on_its_first_call_and_is_answered_by_it(bare_gw: RunningGateway):
    assert bare_gw.gateway.aws.moto is None
    sqs = aws_client("sqs", bare_gw.gateway.http_url)
    url = (await asyncio.to_thread(sqs.create_queue, QueueName="parley-test-queue"))["QueueUrl"]
    assert bare_gw.gateway.aws.moto is not None
    await asyncio.to_thread(sqs.send_message, QueueUrl=url, MessageBody="hello")
    received = await asyncio.to_thread(sqs.receive_message, QueueUrl=url)
    assert [m["Body"] for m in received["Messages"]] == ["hello"]
    identity = await asyncio.to_thread(aws_client("sts", bare_gw.gateway.http_url).get_caller_identity)
    assert identity["Account"] == "123456789012"
    said = bare_gw.console.text()
    assert said.count("starting moto's server") == 1 and "'sqs'" in said


async def test_dynamodb_signed_calls_to_the_gateway_reach_the_functions_dynamodb(bare_gw: RunningGateway):
    via_gateway = aws_client("dynamodb", bare_gw.gateway.http_url)
    tables = (await asyncio.to_thread(via_gateway.list_tables))["TableNames"]
    assert "bare-items" in tables


@pytest.mark.parametrize("authorization, query, service", [
    ("AWS4-HMAC-SHA256 Credential=AKID/20261129/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=ab", None, "sqs"),
    ("AWS4-HMAC-SHA256 Credential=AKID/20261129/us-east-1/execute-api/aws4_request, SignedHeaders=host, Signature=ab", None, "execute-api"),
    ("", "AKID/20261129/us-east-1/s3/aws4_request", "s3"),
    ("Bearer eyJhbGciOi", None, None),
    ("AWS4-HMAC-SHA256 garbage", None, None),
    ("", "not-a-scope", None),
])
def test_signing_service_is_read_from_the_credential_scope(authorization: str, query: str | None, service: str | None):
    assert signing_service(authorization, query) == service
