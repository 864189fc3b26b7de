"""The layer's direct DynamoDB calls (`parley.aws.dynamodb_requests`) held to botocore's own pipeline on the
same client: the same answers and errors from DynamoDB Local, and, in front of it, the same attempts,
waits and outcome for every way an answer can fail. The front checks every call's SigV4 signature as
AWS does, which DynamoDB Local does not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
import zlib
from functools import partial
from typing import Any, Callable, Iterator

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.client import BaseClient
from moto.core.botocore_stubber import MockRawResponse
from pynamodb.connection import Connection

from parley_testing.functions import lambda_import_env
from parley_testing.scripted_dynamodb import ScriptedDynamoDB

from parley.aws.dynamodb_requests import SKIPPED_EVENTS, USER_AGENT, DirectItemCalls, send_item_calls_directly

# An answer under load (a busy JVM, a whole test run on 2 cores) must not look like a hang: at 0.3 s,
# botocore's path retried in one `make test` and the direct path did not, so the two runs differed.
READ_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def front(dynamodb_local: Any, layer: Any) -> Iterator[ScriptedDynamoDB]:
    scripted = ScriptedDynamoDB(dynamodb_local.endpoint, botocore.session.get_session().get_credentials(),
                                hang_s=2 * READ_TIMEOUT_S).start()
    yield scripted
    scripted.stop()


@pytest.fixture(scope="module")
def table(layer: Any) -> str:
    tables, _ = layer
    return str(tables.RateCounter.Meta.table_name)


class Paths:
    """One PynamoDB-built client on the front, called through botocore's pipeline or directly; the
    retry handler's waits made small and fixed (its jitter off), and recorded for both paths."""

    def __init__(self, front: ScriptedDynamoDB) -> None:
        self.front = front
        self.client = Connection(host=front.url, region="us-east-1", read_timeout_seconds=READ_TIMEOUT_S,
                                 connect_timeout_seconds=1, max_retry_attempts=3).client
        self.decided: list[float] = []  # the handler's waits, in order
        self.slept: list[float] = []  # the direct path's sleeps
        handler = self.client.meta.events._emitter._unique_id_handlers["retry-config-dynamodb"]["handler"].__self__
        policy = handler._retry_policy
        policy._retry_backoff._random = lambda: 0.001
        decide = policy.compute_retry_delay

        def recorded(context: Any) -> float:
            delay = decide(context)
            self.decided.append(delay)
            return delay

        policy.compute_retry_delay = recorded
        self.botocore = partial(BaseClient._make_api_call, self.client)
        self.direct = DirectItemCalls(self.client, self.botocore, sleep=self.slept.append)

    def outcome(self, call: Callable[[str, dict], Any], operation: str, params: dict, script: list = ()) -> dict:
        """What one call gave (its answer or its error, without the request id and the headers' values),
        what the front saw, and the handler's waits."""
        self.front.script = list(script)
        self.front.take()
        self.decided.clear()
        try:
            result: dict[str, Any] = {"answer": _comparable(call(operation, dict(params)))}
        except Exception as error:
            response = getattr(error, "response", None)
            result = {"error": type(error).__name__, "response": _comparable(response) if response else str(error)}
        arrivals = self.front.take()
        assert [a.signature_problem for a in arrivals] == [None] * len(arrivals)
        result["attempts"] = len(arrivals)
        result["waits"] = list(self.decided)
        result["user_agents"] = {a.user_agent == USER_AGENT for a in arrivals}
        return result


def _comparable(parsed: dict[str, Any]) -> dict[str, Any]:
    out = dict(parsed)
    metadata = dict(out.pop("ResponseMetadata", {}))
    headers = metadata.pop("HTTPHeaders", {})
    metadata.pop("RequestId", None)
    out["ResponseMetadata"] = {**metadata, "header names": sorted(headers)}
    return out


@pytest.fixture
def paths(front: ScriptedDynamoDB) -> Paths:
    return Paths(front)


def test_the_layers_clients_send_item_calls_directly(layer: Any) -> None:
    tables, _ = layer
    models = [tables.Membership, tables.StoredMessage, tables.IdempotencyRecord, tables.RateCounter]
    assert all(isinstance(m._get_connection().connection.client.__dict__.get("_make_api_call"), DirectItemCalls) for m in models)


def _item_calls(table: str, key: str) -> list[tuple[str, dict[str, Any]]]:
    item = {"key": {"S": key}, "hits": {"N": "1"}, "tags": {"SS": ["a", "é"]}, "m": {"M": {"n": {"NULL": True}, "l": {"L": [{"BOOL": False}, {"N": "-1.5e3"}]}}}}
    return [
        ("PutItem", {"TableName": table, "Item": item, "ReturnConsumedCapacity": "TOTAL"}),
        ("PutItem", {"TableName": table, "Item": {**item, "hits": {"N": "2"}}, "ReturnValues": "ALL_OLD"}),
        ("GetItem", {"TableName": table, "Key": {"key": {"S": key}}, "ConsistentRead": True,
                     "ProjectionExpression": "#k, hits, m", "ExpressionAttributeNames": {"#k": "key"}}),
        ("UpdateItem", {"TableName": table, "Key": {"key": {"S": key}}, "UpdateExpression": "ADD hits :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}}, "ReturnValues": "UPDATED_NEW"}),
        ("Query", {"TableName": table, "KeyConditionExpression": "#k = :k", "ExpressionAttributeNames": {"#k": "key"},
                   "ExpressionAttributeValues": {":k": {"S": key}}, "Limit": 1, "ReturnConsumedCapacity": "TOTAL"}),
        ("BatchWriteItem", {"RequestItems": {table: [{"PutRequest": {"Item": {"key": {"S": f"{key}-{n}"}}}} for n in range(3)]}}),
        ("DeleteItem", {"TableName": table, "Key": {"key": {"S": key}}, "ReturnValues": "ALL_OLD"}),
        # Errors: a failed condition with the item it found, a bad expression, a missing table.
        ("PutItem", {"TableName": table, "Item": item, "ReturnValues": "ALL_OLD"}),
        ("PutItem", {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(#k)",
                     "ExpressionAttributeNames": {"#k": "key"}, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}),
        ("UpdateItem", {"TableName": table, "Key": {"key": {"S": key}}, "UpdateExpression": "SET = nonsense"}),
        ("GetItem", {"TableName": f"{table}-missing", "Key": {"key": {"S": key}}}),
    ]


def _run(paths: Paths, call: Callable[[str, dict], Any], table: str) -> list[dict[str, Any]]:
    """The item calls, from a table without their items."""
    for key in ("same-answers", *(f"same-answers-{n}" for n in range(3))):
        paths.botocore("DeleteItem", {"TableName": table, "Key": {"key": {"S": key}}})
    return [paths.outcome(call, op, params) for op, params in _item_calls(table, "same-answers")]


def test_the_same_answers_and_errors_as_botocore(paths: Paths, table: str) -> None:
    botocore_run = _run(paths, paths.botocore, table)
    direct_run = _run(paths, paths.direct, table)
    for mine, theirs in zip(direct_run, botocore_run):
        assert {**mine, "user_agents": None} == {**theirs, "user_agents": None}
        assert (mine["user_agents"], theirs["user_agents"]) == ({True}, {False})
    errors = [r["error"] for r in direct_run if "error" in r]
    assert errors == ["ConditionalCheckFailedException", "ClientError", "ResourceNotFoundException"]
    assert direct_run[-3]["response"]["Item"]["hits"] == {"N": "1"}  # the modeled field of the error


SCRIPTS = {
    "a 500, then an answer": [(500, "InternalServerError")],
    "throttled, then an answer": [(400, "ThrottlingException")],
    "throttled past every attempt": [(400, "ProvisionedThroughputExceededException")] * 5,
    "a corrupted answer (CRC32), then a good one": ["crc"],
    "a connection dropped with no answer, then an answer": ["drop"],
    "no answer within the read timeout, then one": ["hang"],
    "a dropped connection past every attempt": ["drop"] * 5,
    "a client error: not retried": [(400, "ValidationException")],
    "a server error, then a client error": [(503, "ServiceUnavailable"), (400, "ValidationException")],
}


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_same_attempts_waits_and_outcome_as_botocore(paths: Paths, table: str, name: str) -> None:
    script = SCRIPTS[name]
    call = ("UpdateItem", {"TableName": table, "Key": {"key": {"S": f"scripted-{name}"}}, "UpdateExpression": "ADD hits :one",
                           "ExpressionAttributeValues": {":one": {"N": "1"}}, "ReturnValues": "UPDATED_NEW"})
    theirs = paths.outcome(paths.botocore, *call, script)
    mine = paths.outcome(paths.direct, *call, script)
    # The counter went up by one per answered attempt, and each path answers from its own count.
    if "answer" in theirs:
        mine["answer"]["Attributes"] = theirs["answer"]["Attributes"] = None
    assert {**mine, "user_agents": None} == {**theirs, "user_agents": None}
    assert mine["attempts"] > 1 or "not retried" in name
    assert mine["user_agents"] == {True}  # every attempt was the direct path's own, none botocore's
    assert paths.slept == mine["waits"]


def test_the_front_refuses_a_call_signed_for_another_region(front: ScriptedDynamoDB, table: str) -> None:
    """So the signature checks above would see a direct call signed for the wrong region, as AWS would."""
    elsewhere = send_item_calls_directly(Connection(host=front.url, region="eu-west-1").client)
    assert isinstance(elsewhere.__dict__["_make_api_call"], DirectItemCalls)
    with pytest.raises(elsewhere.exceptions.ClientError, match="signed for eu-west-1/dynamodb, not us-east-1/dynamodb"):
        elsewhere.get_item(TableName=table, Key={"key": {"S": "nobody"}})
    assert [a.signature_problem is not None for a in front.take()] == [True]


def test_calls_from_many_threads_at_once_are_all_signed_and_counted(paths: Paths, front: ScriptedDynamoDB, table: str) -> None:
    """The store reads rooms 16 at a time in one environment: every thread's call is signed right (the
    signer's day key is shared) and none is lost or doubled, with a throttled one among them."""
    key = {"key": {"S": "threads"}}
    paths.botocore("DeleteItem", {"TableName": table, "Key": key})
    front.take()
    front.script = [(400, "ThrottlingException")]
    add = {"TableName": table, "Key": key, "UpdateExpression": "ADD hits :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}
    with ThreadPoolExecutor(max_workers=16) as threads:
        list(threads.map(lambda _: paths.direct("UpdateItem", dict(add)), range(160)))
    arrivals = front.take()
    assert len(arrivals) == 161 and [a.signature_problem for a in arrivals] == [None] * 161
    item = paths.direct("GetItem", {"TableName": table, "Key": key, "ConsistentRead": True})["Item"]
    assert item["hits"] == {"N": "160"}


def test_what_json_cannot_carry_goes_through_botocore(paths: Paths, table: str) -> None:
    """A blob is base64 in DynamoDB's JSON: botocore's serializer sends it, and the answer is the same item."""
    key = {"key": {"S": "blob"}}
    put = paths.outcome(paths.direct, "PutItem", {"TableName": table, "Item": {**key, "data": {"B": b"\x00\xff"}}})
    got = paths.outcome(paths.direct, "GetItem", {"TableName": table, "Key": key, "ConsistentRead": True})
    assert (put["user_agents"], got["user_agents"]) == ({False}, {True})
    assert got["answer"]["Item"]["data"] == {"B": b"\x00\xff"}  # the reader decodes it, as botocore's walk does


def test_an_operation_not_listed_goes_through_botocore(paths: Paths, table: str) -> None:
    described = paths.outcome(paths.direct, "DescribeTable", {"TableName": table})
    assert described["user_agents"] == {False} and described["answer"]["Table"]["TableName"] == table


# The direct path fires these of the events botocore fires for a call (`DirectItemCalls`).
FIRED_EVENTS = {"before-send", "needs-retry", "after-call"}


def test_every_event_botocore_fires_for_a_call_is_fired_directly_or_checked_for_hooks(paths: Paths, table: str) -> None:
    """A handler of an event the direct path skips keeps a client on botocore's path only if
    `SKIPPED_EVENTS` names that event: so it must name every event botocore fires for an item call,
    an answered one and one that fails (no answer past every attempt), apart from those fired directly."""
    emitter = paths.client.meta.events._emitter
    fired: set[str] = set()
    emit = emitter._emit

    def recorded(event_name: str, kwargs: Any, stop_on_response: bool = False) -> Any:
        fired.add(event_name.split(".")[0])
        return emit(event_name, kwargs, stop_on_response)

    emitter._emit = recorded
    paths.outcome(paths.botocore, "GetItem", {"TableName": table, "Key": {"key": {"S": "events"}}})
    failed = paths.outcome(paths.botocore, "GetItem", {"TableName": table, "Key": {"key": {"S": "events"}}}, ["drop"] * 4)
    assert failed["error"] == "ConnectionClosedError"
    assert fired - FIRED_EVENTS - set(SKIPPED_EVENTS) == set()


@pytest.mark.parametrize("event", ["before-call", "choose-signer", "after-call-error"])
def test_a_client_something_else_hooks_into_keeps_botocores_pipeline(front: ScriptedDynamoDB, event: str) -> None:
    hooked = Connection(host=front.url, region="us-east-1").client
    hooked.meta.events.register(f"{event}.dynamodb.PutItem", lambda **kwargs: None)
    assert "_make_api_call" not in send_item_calls_directly(hooked).__dict__
    plain = Connection(host=front.url, region="us-east-1").client
    assert isinstance(send_item_calls_directly(plain).__dict__["_make_api_call"], DirectItemCalls)  # so the above can fail


def test_before_send_hooks_run_as_in_botocore(paths: Paths, front: ScriptedDynamoDB, table: str) -> None:
    """PynamoDB's extra headers reach DynamoDB, and moto's stub answers while a mock is on."""
    import moto

    seen: list[str] = []
    with_headers = Connection(host=front.url, region="us-east-1", extra_headers={"x-team": "chat"}).client
    with_headers.meta.events.register("before-send.dynamodb.GetItem", lambda request, **kw: seen.append(request.headers["x-team"]))
    direct = send_item_calls_directly(with_headers).__dict__["_make_api_call"]
    assert "Item" not in direct("GetItem", {"TableName": table, "Key": {"key": {"S": "nobody"}}})
    assert seen == ["chat"]
    aws = "https://dynamodb.us-east-1.amazonaws.com"
    with moto.mock_aws():
        stubbed = send_item_calls_directly(Connection(host=aws, region="us-east-1").client)
        assert isinstance(stubbed.__dict__["_make_api_call"], DirectItemCalls)
        stubbed.create_table(TableName="in-moto", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                             AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        stubbed.put_item(TableName="in-moto", Item={"k": {"S": "1"}, "v": {"S": "moto"}})
        assert stubbed.get_item(TableName="in-moto", Key={"k": {"S": "1"}})["Item"]["v"] == {"S": "moto"}


@pytest.mark.parametrize("tracing", [False, True])
def test_with_tracing_on_the_store_keeps_botocores_pipeline(tracing: bool) -> None:
    """The X-Ray SDK records DynamoDB calls by wrapping botocore's client: with `TracingMode=Active`,
    a chat function's models must stay on that path, or the traces lose their DynamoDB segments."""
    code = ("import json, app, parley.aws.tables as t\n"  # the function's module first, as Lambda imports it
            "client = t.RateCounter._get_connection().connection.client\n"
            "print(json.dumps('_make_api_call' in client.__dict__))")
    env = {**os.environ, **lambda_import_env("chat_message"), "AWS_LAMBDA_FUNCTION_NAME": "parley-chat", "LAMBDA_TASK_ROOT": "/tmp",
           "POWERTOOLS_TRACE_DISABLED": "false" if tracing else "true", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd="/tmp", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.splitlines()[-1]) is (not tracing)


def test_a_tracer_patching_after_the_first_call_still_gets_answers(dynamodb_local: Any) -> None:
    """The X-Ray SDK's PynamoDB patch (in `patch_all`, which a Powertools Tracer runs) wraps botocore's
    HTTP session and reads the request's headers as botocore hands them over: bytes. A Tracer made after
    a model's first call finds the client already direct; its calls must still get DynamoDB's answer."""
    code = ("import sys, json\n"
            "from pynamodb.connection import Connection\n"
            "from parley.aws.dynamodb_requests import DirectItemCalls, send_item_calls_directly\n"
            "client = send_item_calls_directly(Connection(host=sys.argv[1], region='us-east-1').client)\n"
            "assert isinstance(client.__dict__['_make_api_call'], DirectItemCalls)\n"
            "from aws_xray_sdk.core import patch_all\n"
            "patch_all()\n"
            "try:\n"
            "    client.get_item(TableName='no-such-table', Key={'k': {'S': 'v'}})\n"
            "except Exception as error:\n"
            "    print(json.dumps(type(error).__name__))\n")
    env = {**os.environ, **lambda_import_env("chat_message"), "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR"}
    out = subprocess.run([sys.executable, "-c", code, dynamodb_local.endpoint], env=env, cwd="/tmp",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.splitlines()[-1]) == "ResourceNotFoundException"


# (region, endpoint URL, environment, whether the direct path takes the client's item calls)
ENDPOINT_CASES = {
    "DynamoDB's regional endpoint": ("us-east-1", None, {}, True),
    # botocore's ruleset: region "local" is http://localhost:8000, signed for us-east-1 (DynamoDB Local
    # keeps a database per signed region unless started with -sharedDb).
    "the region 'local'": ("local", None, {}, True),
    # Credentials that know their account (AWS_ACCOUNT_ID, SSO, assume-role): an account's endpoint.
    "credentials with an account id": ("us-east-1", None, {"AWS_ACCOUNT_ID": "123456789012"}, True),
    "an account id required but unknown": ("us-east-1", None, {"AWS_ACCOUNT_ID_ENDPOINT_MODE": "required"}, False),
    "an endpoint with a path": ("us-east-1", "http://127.0.0.1:9/dynamodb", {}, True),
}


@pytest.mark.parametrize("name", ENDPOINT_CASES)
def test_item_calls_go_where_botocore_sends_them_signed_for_its_region(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """botocore resolves a call's endpoint (URL and signing region) per call from its ruleset, not
    from the client's `endpoint_url`: a PynamoDB model's item calls must reach that URL with that
    credential scope on either path (or fail as botocore fails)."""
    region, host, env, direct = ENDPOINT_CASES[name]
    for key in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL", "AWS_ACCOUNT_ID", "AWS_ACCOUNT_ID_ENDPOINT_MODE", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", **env}.items():
        monkeypatch.setenv(key, value)
    client = Connection(host=host, region=region).client
    sent: list[tuple[str, str]] = []

    def answer(request: Any, **kwargs: Any) -> AWSResponse:
        authorization = request.headers["Authorization"]
        authorization = authorization.decode() if isinstance(authorization, bytes) else authorization
        sent.append((request.url, authorization.split("Credential=")[1].split(",")[0]))
        return AWSResponse(request.url, 200, {"x-amz-crc32": str(zlib.crc32(b"{}"))}, MockRawResponse(b"{}"))

    client.meta.events.register("before-send.dynamodb", answer)

    def outcome(call: Callable[..., Any]) -> Any:
        sent.clear()
        try:
            call("GetItem", {"TableName": "t", "Key": {"k": {"S": "v"}}})
        except Exception as error:
            return type(error).__name__
        return sent[:]

    theirs = outcome(partial(BaseClient._make_api_call, client))
    mine = outcome(send_item_calls_directly(client)._make_api_call)
    assert mine == theirs
    assert isinstance(client.__dict__.get("_make_api_call"), DirectItemCalls) is direct
