"""SSM served by the gateway, and AWS calls for other services forwarded (moto started on demand).

Over real sockets with botocore, as a function's unchanged code would call them: the workers get
`AWS_ENDPOINT_URL_SSM` and `AWS_ENDPOINT_URL` = the gateway's port.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from botocore.exceptions import ClientError

from parley_local.local_aws.account import aws_client
from parley_local.gateway.addresses import is_loopback_address
from parley_local.gateway.this_machine_only import is_from_this_machine
from parley_local.local_aws.other_services import OtherAwsServices, signing_service
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


async def _ssm_call(gw: RunningGateway, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A raw AWS JSON 1.1 call: botocore would refuse a non-boolean flag before sending it."""
    headers = {"X-Amz-Target": f"AmazonSSM.{operation}", "Content-Type": "application/x-amz-json-1.1"}
    async with aiohttp.ClientSession() as http:
        async with http.post(gw.gateway.http_url + "/", data=json.dumps(body), headers=headers) as answer:
            return answer.status, json.loads(await answer.read())


async def test_flags_must_be_json_booleans_and_a_refused_overwrite_changes_nothing(gw: RunningGateway):
    name = "/tests/ssm/flags"
    assert (await _ssm_call(gw, "PutParameter", {"Name": name, "Value": "one", "Type": "SecureString", "Overwrite": True}))[0] == 200
    status, error = await _ssm_call(gw, "PutParameter", {"Name": name, "Value": "two", "Overwrite": "false"})
    assert (status, error["__type"]) == (400, "SerializationException") and "Overwrite" in error["message"]
    status, error = await _ssm_call(gw, "GetParameter", {"Name": name, "WithDecryption": "false"})
    assert (status, error["__type"]) == (400, "SerializationException") and "one" not in json.dumps(error)
    status, error = await _ssm_call(gw, "GetParameters", {"Names": [name], "WithDecryption": 1})
    assert (status, error["__type"]) == (400, "SerializationException")
    status, got = await _ssm_call(gw, "GetParameter", {"Name": name, "WithDecryption": True})
    assert (status, got["Parameter"]["Value"], got["Parameter"]["Version"]) == (200, "one", 1)


async def test_a_name_with_a_trailing_newline_is_not_a_name(gw: RunningGateway):
    status, error = await _ssm_call(gw, "PutParameter", {"Name": "/tests/ssm/secret\n", "Value": "v", "Type": "String"})
    assert (status, error["__type"]) == (400, "ValidationException")
    status, error = await _ssm_call(gw, "GetParameter", {"Name": "/tests/ssm/secret"})
    assert (status, error["__type"]) == (400, "ParameterNotFound")


@pytest.mark.parametrize("selector", ["/aws/service/global-infrastructure/regions", "ssm-setting", "/tests/ssm/labelled:prod"])
async def test_reading_a_reserved_name_or_an_unknown_label_is_parameter_not_found(gw: RunningGateway, selector: str):
    await _ssm_call(gw, "PutParameter", {"Name": "/tests/ssm/labelled", "Value": "v", "Type": "String", "Overwrite": True})
    status, error = await _ssm_call(gw, "GetParameter", {"Name": selector})
    assert (status, error["__type"]) == (400, "ParameterNotFound")


@pytest.mark.parametrize("remote, local", [
    ("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("192.168.1.20", False), ("10.0.0.7", False), ("::ffff:192.168.1.20", False), ("fe80::1", False),
    ("0.0.0.0", False), (None, False), ("", False), ("not-an-address", False),
])
def test_only_a_loopback_peer_is_this_machine(remote: str | None, local: bool):
    assert is_loopback_address(remote) is local


async def test_a_loopback_ssm_call_over_the_socket_is_answered(gw: RunningGateway):
    status, error = await _ssm_call(gw, "GetParameter", {"Name": "/tests/ssm/never-put"})
    assert (status, error["__type"]) == (400, "ParameterNotFound")


async def test_no_session_is_made_for_a_call_forwarded_after_close():
    services = OtherAwsServices(mock.Mock(), announce=mock.Mock())
    await services.close()
    answer = await services._forward(make_mocked_request("POST", "/"), "http://127.0.0.1:9")
    assert answer.status == 503 and services._session is None


def _request(peer: str, local: str | None, path: str = "/") -> web.Request:
    transport = mock.Mock()
    names = {"peername": (peer, 50123), "sockname": (local, 3001) if local else None}
    transport.get_extra_info.side_effect = lambda key, default=None: names.get(key, default)
    return make_mocked_request("POST", path, headers={"Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20261129/us-east-1/execute-api/aws4_request"},
                               transport=transport, match_info={"function": "ChatMessageFunction", "stage": "dev",
                                                                "connection_id": "abc="})


@pytest.mark.parametrize("peer, local, mine", [
    ("127.0.0.1", "127.0.0.1", True),
    ("192.168.1.20", "192.168.1.20", True),  # a handler on this machine reaching https://{domainName}/{stage}
    ("192.168.1.31", "192.168.1.20", False),  # another machine on the LAN
    ("192.168.1.31", None, False),
])
def test_this_machine_is_loopback_or_a_peer_at_the_address_it_connected_to(peer: str, local: str | None, mine: bool):
    assert is_from_this_machine(_request(peer, local)) is mine

