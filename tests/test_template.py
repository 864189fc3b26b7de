"""The SAM template keeps the contract of docs/ARCHITECTURE.md, grants least privilege, lints and builds.

The template is read with cfn-lint's decoder (it understands `!Ref`, `!Sub`, `!GetAtt`, ... and
reports duplicate keys), so intrinsic functions appear in their long form (`{"Fn::Sub": ...}`).
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from cfnlint.decode import decode_str

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "template.yaml"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"

# route key -> (function folder, logical id); the same table as docs/ARCHITECTURE.md
ROUTES = {
    "$connect": ("connect", "ConnectFunction"),
    "$disconnect": ("disconnect", "DisconnectFunction"),
    "$default": ("default", "DefaultFunction"),
    "message": ("message", "MessageFunction"),
    "join_room": ("join_room", "JoinRoomFunction"),
    "leave_room": ("leave_room", "LeaveRoomFunction"),
    "chat_message": ("chat_message", "ChatMessageFunction"),
    "typing": ("typing", "TypingFunction"),
    "mark_read": ("mark_read", "MarkReadFunction"),
    "get_history": ("get_history", "GetHistoryFunction"),
    "get_participants": ("get_participants", "GetParticipantsFunction"),
    "ping": ("ping", "PingFunction"),
    "edit_message": ("edit_message", "EditMessageFunction"),
    "delete_message": ("delete_message", "DeleteMessageFunction"),
    "react": ("react", "ReactFunction"),
    "get_rooms": ("get_rooms", "GetRoomsFunction"),
}
MESSAGE_ROUTES = [k for k in ROUTES if k not in ("$connect", "$disconnect")]
FUNCTIONS = {logical: folder for folder, logical in ROUTES.values()} | {"AuthorizerFunction": "authorizer", "PresenceFunction": "presence", "FanoutFunction": "fanout"}
TABLE_ENV = {
    "MEMBERSHIPS_TABLE": "MembershipsTable",
    "MESSAGES_TABLE": "MessagesTable",
    "IDEMPOTENCY_TABLE": "IdempotencyTable",
}
# The handshake's functions read and write no table: the authorizer checks the token, and `$connect`
# stores nothing (nothing would read a record of open connections: API Gateway knows them).
NO_TABLES = {"AuthorizerFunction", "ConnectFunction"}
BROADCASTERS = {
    "DisconnectFunction", "JoinRoomFunction", "LeaveRoomFunction",
    "ChatMessageFunction", "TypingFunction", "MarkReadFunction",
    "EditMessageFunction", "DeleteMessageFunction", "ReactFunction", "PresenceFunction", "FanoutFunction",
}
# Sized at the Lambda CPU share (docs/benchmarks.md): the fan-out shards, and chat_message (cost of a
# room of 10 and latency of a room of 100); everything else 256.
MEMORY = {"FanoutFunction": 1024, "ChatMessageFunction": 1024}
API_ARN_PREFIX = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/"
MANAGE_CONNECTIONS_ARNS = {
    API_ARN_PREFIX + "${StageName}/POST/@connections/*",
    API_ARN_PREFIX + "${StageName}/DELETE/@connections/*",
}
SSM_PARAMETER_ARN = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${JwtSecretParameterName}"


# ------------------------------------------------------------------ helpers

def _load_template() -> dict:
    template, matches = decode_str(TEMPLATE_PATH.read_text())
    assert not matches, [str(m) for m in matches]
    return template


@pytest.fixture(scope="module")
def template() -> dict:
    return _load_template()


@pytest.fixture(scope="module")
def resources(template) -> dict:
    return template["Resources"]


def _of_type(resources: dict, type_: str) -> dict:
    return {k: v for k, v in resources.items() if v["Type"] == type_}


def _ref(value) -> str | None:
    return value.get("Ref") if isinstance(value, dict) else None


def _sub(value) -> str | None:
    """The template string of a `!Sub` (short or list form), else None."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return None


def _prop(resources: dict, logical: str, name: str, globals_: dict):
    """A function property, falling back to Globals.Function like SAM does."""
    props = resources[logical]["Properties"]
    return props[name] if name in props else globals_.get(name)


def _env(template: dict, logical: str) -> dict:
    """The function's effective environment: Globals merged with its own variables."""
    merged = dict(template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
    merged.update(template["Resources"][logical]["Properties"].get("Environment", {}).get("Variables", {}))
    return merged


def _route(resources: dict, key: str) -> tuple[str, dict]:
    found = [(k, v) for k, v in _of_type(resources, "AWS::ApiGatewayV2::Route").items()
             if v["Properties"]["RouteKey"] == key]
    assert len(found) == 1, f"expected exactly one route {key!r}, found {[k for k, _ in found]}"
    return found[0]


def _listify(value) -> list:
    return value if isinstance(value, list) else [value]


def _statements(document) -> list[dict]:
    if isinstance(document, dict) and "Statement" in document:
        return _listify(document["Statement"])
    return []


def _all_statements(resources: dict) -> list[tuple[str, dict]]:
    """Every IAM statement in the template: inline function policies, managed and inline IAM policies, roles."""
    out = []
    for logical, res in resources.items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::Serverless::Function":
            for policy in _listify(props.get("Policies", [])):
                out += [(logical, s) for s in _statements(policy)]
        elif res["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            out += [(logical, s) for s in _statements(props["PolicyDocument"])]
        elif res["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                out += [(logical, s) for s in _statements(policy["PolicyDocument"])]
    return out


def _resource_label(resource) -> str:
    """A short name for an IAM resource: a table, a table index, or the literal ARN template."""
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        target, attr = resource["Fn::GetAtt"] if isinstance(resource["Fn::GetAtt"], list) \
            else resource["Fn::GetAtt"].split(".", 1)
        assert attr == "Arn", resource
        return target
    sub = _sub(resource)
    if sub is not None:
        m = re.fullmatch(r"\$\{(\w+)\.Arn\}/index/(\w+)", sub)
        return f"{m.group(1)}/index/{m.group(2)}" if m else sub
    return str(resource)


def _function_grants(resources: dict, logical: str) -> set[tuple[str, str]]:
    """(action, resource label) pairs a function is granted, following `!Ref` to managed policies."""
    grants = set()
    for policy in _listify(resources[logical]["Properties"].get("Policies", [])):
        ref = _ref(policy)
        if ref is not None:
            assert resources[ref]["Type"] == "AWS::IAM::ManagedPolicy", f"{logical}: {ref} is not a managed policy"
            statements = _statements(resources[ref]["Properties"]["PolicyDocument"])
        else:
            assert isinstance(policy, dict) and "Statement" in policy, \
                f"{logical}: only inline statements and this template's managed policies are allowed, got {policy!r}"
            statements = _statements(policy)
        grants |= _grants_of(statements)
    # A policy attached to the role SAM generates through its `Roles` (only where the function's own
    # ARN is the resource, which its Policies cannot name without a circular reference).
    for ref in _attached_to_role(resources, logical):
        grants |= _grants_of(_statements(resources[ref]["Properties"]["PolicyDocument"]))
    return grants


def _attached_to_role(resources: dict, logical: str) -> list[str]:
    """The IAM policies (managed or not) whose `Roles` name the role SAM generates for `logical`."""
    return [ref for ref, res in resources.items() if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
            and {"Ref": f"{logical}Role"} in res["Properties"].get("Roles", [])]


def _grants_of(statements: list[dict]) -> set[tuple[str, str]]:
    grants = set()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in _listify(statement["Action"]):
            for resource in _listify(statement["Resource"]):
                grants.add((action, _resource_label(resource)))
    return grants


def _doc_routes() -> dict[str, tuple[str, str]]:
    rows = re.findall(r"^\|\s*`([^`]+)`\s*\|\s*`([^`]+)`\s*\|\s*`(\w+Function)`\s*\|", ARCHITECTURE.read_text(), re.M)
    return {key: (folder, logical) for key, folder, logical in rows}


# ------------------------------------------------------------------ contract

def test_route_table_matches_architecture_doc():
    assert _doc_routes() == ROUTES


def test_no_yaml_anchors_or_aliases():
    # CloudFormation does not resolve YAML aliases; keep the template plain.
    events = list(yaml.parse(TEMPLATE_PATH.read_text(), Loader=yaml.SafeLoader))
    assert not [e for e in events if isinstance(e, yaml.AliasEvent)]
    assert not [e for e in events if getattr(e, "anchor", None)]


def test_websocket_api(template, resources):
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    assert not _of_type(resources, "AWS::Serverless::WebSocketApi")
    apis = _of_type(resources, "AWS::ApiGatewayV2::Api")
    assert list(apis) == ["WebSocketApi"]
    props = apis["WebSocketApi"]["Properties"]
    assert props["ProtocolType"] == "WEBSOCKET"
    assert props["RouteSelectionExpression"] == "$request.body.type"


def test_exactly_the_documented_routes(resources):
    keys = sorted(r["Properties"]["RouteKey"] for r in _of_type(resources, "AWS::ApiGatewayV2::Route").values())
    assert keys == sorted(ROUTES)


@pytest.mark.parametrize("key", list(ROUTES))
def test_route_integration_and_permission(resources, key):
    folder, function = ROUTES[key]
    _, route = _route(resources, key)
    props = route["Properties"]
    assert _ref(props["ApiId"]) == "WebSocketApi"

    m = re.fullmatch(r"integrations/\$\{(\w+)\}", _sub(props["Target"]) or "")
    assert m, f"{key}: Target must be !Sub integrations/${{Integration}}, got {props['Target']!r}"
    integration = resources[m.group(1)]
    assert integration["Type"] == "AWS::ApiGatewayV2::Integration"
    iprops = integration["Properties"]
    assert _ref(iprops["ApiId"]) == "WebSocketApi"
    assert iprops["IntegrationType"] == "AWS_PROXY"
    assert _sub(iprops["IntegrationUri"]) == (
        "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/"
        f"${{{function}.Arn}}/invocations"
    )

    permissions = [p["Properties"] for p in _of_type(resources, "AWS::Lambda::Permission").values()
                   if _ref(p["Properties"]["FunctionName"]) == function]
    assert len(permissions) == 1, f"{function}: expected one Lambda::Permission"
    perm = permissions[0]
    assert perm["Action"] == "lambda:InvokeFunction"
    assert perm["Principal"] == "apigateway.amazonaws.com"
    # scoped to this API: this route on any stage (or this stage), or the whole API
    allowed = {API_ARN_PREFIX + s for s in (f"*/{key}", f"${{StageName}}/{key}", "*/*", "*")}
    assert _sub(perm["SourceArn"]) in allowed, perm["SourceArn"]


@pytest.mark.parametrize("key", list(ROUTES))
def test_route_responses(resources, key):
    logical, route = _route(resources, key)
    responses = [r["Properties"] for r in _of_type(resources, "AWS::ApiGatewayV2::RouteResponse").values()
                 if _ref(r["Properties"]["RouteId"]) == logical]
    if key in MESSAGE_ROUTES:
        assert route["Properties"].get("RouteResponseSelectionExpression") == "$default"
        assert [r["RouteResponseKey"] for r in responses] == ["$default"]
        assert all(_ref(r["ApiId"]) == "WebSocketApi" for r in responses)
    else:
        assert "RouteResponseSelectionExpression" not in route["Properties"]
        assert responses == []


def test_authorizer(resources):
    _, connect = _route(resources, "$connect")
    assert connect["Properties"]["AuthorizationType"] == "CUSTOM"
    authorizer_id = _ref(connect["Properties"]["AuthorizerId"])
    authorizer = resources[authorizer_id]
    assert authorizer["Type"] == "AWS::ApiGatewayV2::Authorizer"
    props = authorizer["Properties"]
    assert _ref(props["ApiId"]) == "WebSocketApi"
    assert props["AuthorizerType"] == "REQUEST"
    assert props["IdentitySource"] == ["route.request.querystring.token"]
    assert "${AuthorizerFunction.Arn}" in _sub(props["AuthorizerUri"])

    perms = [p["Properties"] for p in _of_type(resources, "AWS::Lambda::Permission").values()
             if _ref(p["Properties"]["FunctionName"]) == "AuthorizerFunction"]
    assert len(perms) == 1
    assert perms[0]["Principal"] == "apigateway.amazonaws.com"
    assert _sub(perms[0]["SourceArn"]) == API_ARN_PREFIX + "authorizers/${" + authorizer_id + "}"

    for key in ROUTES:
        if key != "$connect":
            assert _route(resources, key)[1]["Properties"].get("AuthorizationType", "NONE") == "NONE"


def test_stage_and_parameters(template, resources):
    params = template["Parameters"]
    stages = _of_type(resources, "AWS::ApiGatewayV2::Stage")
    assert len(stages) == 1
    stage = next(iter(stages.values()))["Properties"]
    assert _ref(stage["ApiId"]) == "WebSocketApi"
    assert stage["AutoDeploy"] is True
    assert _ref(stage["StageName"]) == "StageName"
    throttling = stage["DefaultRouteSettings"]
    for setting in ("ThrottlingBurstLimit", "ThrottlingRateLimit"):
        assert _ref(throttling[setting]) == setting and setting in params
    assert not _of_type(resources, "AWS::ApiGatewayV2::Deployment")  # AutoDeploy owns deployments

    expected_defaults = {
        "StageName": "dev",
        "LogLevel": "INFO",
        "MaxMessageLength": 4000,
        "FanoutMaxInFlight": 64,
        "JwtSecretParameterName": "/parley/jwt-secret",
        "JwtIssuer": "",
        "JwtAudience": "",
        "AllowedOrigins": "http://127.0.0.1:3001,http://localhost:3001",
        "RoomAccess": "open",
    }
    for name, default in expected_defaults.items():
        assert str(params[name]["Default"]) == str(default), name
    assert re.fullmatch(params["JwtSecretParameterName"]["AllowedPattern"], "/parley/jwt-secret")
    assert not re.fullmatch(params["JwtSecretParameterName"]["AllowedPattern"], "parley/jwt-secret")


# ------------------------------------------------------------------ functions and layer

def test_functions(template, resources):
    functions = _of_type(resources, "AWS::Serverless::Function")
    assert set(functions) == set(FUNCTIONS)
    globals_ = template["Globals"]["Function"]
    for logical, folder in FUNCTIONS.items():
        props = functions[logical]["Properties"]
        assert props["CodeUri"].rstrip("/") == f"functions/{folder}"
        assert (ROOT / "functions" / folder / "app.py").is_file()
        assert _prop(resources, logical, "Handler", globals_) == "app.lambda_handler"
        assert _prop(resources, logical, "Runtime", globals_) == "python3.13"
        assert _prop(resources, logical, "Architectures", globals_) == ["arm64"]
        assert _prop(resources, logical, "Tracing", globals_) == {"Ref": "TracingMode"}
        assert _prop(resources, logical, "MemorySize", globals_) == MEMORY.get(logical, 256)
        assert {"Ref": "CommonLayer"} in _prop(resources, logical, "Layers", globals_)
        timeout = _prop(resources, logical, "Timeout", globals_)
        if logical == "AuthorizerFunction":
            assert timeout == 10
        elif logical == "FanoutFunction":
            # API Gateway does not invoke it (async only, not bound by the 29 s integration timeout);
            # a continuation reads a room of 100,000 within it, with margin (docs/benchmarks.md).
            assert 60 <= timeout <= 300
        else:
            assert 1 <= timeout <= 29, f"{logical}: beyond API Gateway's 29 s integration timeout"


def test_function_environment(template):
    params = template["Parameters"]
    for logical in FUNCTIONS:
        env = _env(template, logical)
        assert env["POWERTOOLS_SERVICE_NAME"] == "parley"
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Parley"
        assert _ref(env["POWERTOOLS_LOG_LEVEL"]) == "LogLevel"
        assert _ref(env["ROOM_ACCESS"]) == "RoomAccess"  # the authorizer and every route decide alike
        if logical in NO_TABLES:
            assert not set(TABLE_ENV) & set(env), f"{logical} has no business with the tables"
        else:
            assert {k: _ref(v) for k, v in env.items() if k in TABLE_ENV} == TABLE_ENV
        if logical == "AuthorizerFunction":
            assert _ref(env["JWT_SECRET_PARAMETER"]) == "JwtSecretParameterName"
            assert _ref(env["JWT_ISSUER"]) == "JwtIssuer"
            assert _ref(env["JWT_AUDIENCE"]) == "JwtAudience"
            assert _ref(env["ALLOWED_ORIGINS"]) == "AllowedOrigins"
        else:
            assert not {"JWT_SECRET_PARAMETER", "ALLOWED_ORIGINS"} & set(env)
        if logical in BROADCASTERS:
            assert _ref(env["FANOUT_MAX_IN_FLIGHT"]) == "FanoutMaxInFlight"
        if "FANOUT_FUNCTION_NAME" in env or logical == "FanoutFunction":  # whoever cuts a room into shards and pages
            assert _ref(env["FANOUT_SHARD_SIZE"]) == "FanoutShardSize" and _ref(env["FANOUT_PAGE_SIZE"]) == "FanoutPageSize"
        if logical == "ChatMessageFunction":
            assert _ref(env["MAX_MESSAGE_LENGTH"]) == "MaxMessageLength"
    for name in ("FanoutMaxInFlight", "MaxMessageLength", "LogLevel"):
        assert name in params


def test_common_layer(resources):
    layer = resources["CommonLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    props = layer["Properties"]
    assert props["CompatibleRuntimes"] == ["python3.13"]
    assert props["CompatibleArchitectures"] == ["arm64"]
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}
    # SAM's python layer build copies ContentUri into `python/` and pip-installs ContentUri/requirements.txt
    # there, so ContentUri is the directory that holds the `parley` package and the requirements file.
    content = ROOT / props["ContentUri"]
    assert content.resolve().is_relative_to(ROOT / "layers" / "common")
    assert (content / "parley").is_dir(), f"{content}/parley is missing"
    assert (content / "requirements.txt").is_file(), f"{content}/requirements.txt is missing: the layer would ship without dependencies"
    requirements = (content / "requirements.txt").read_text().lower()
    for dependency in ("aws-lambda-powertools", "pynamodb", "pyjwt"):
        assert dependency in requirements


# ------------------------------------------------------------------ tables

TABLE_KEYS = {
    "MembershipsTable": [("roomId", "HASH"), ("memberKey", "RANGE")],
    "MessagesTable": [("roomId", "HASH"), ("messageId", "RANGE")],
    "IdempotencyTable": [("key", "HASH")],
}
TTL_TABLES = {"MembershipsTable", "IdempotencyTable"}


def test_tables(resources):
    tables = {k: v for k, v in resources.items() if v["Type"].endswith("Table") or "DynamoDB" in v["Type"]}
    assert set(tables) == set(TABLE_KEYS)
    for logical, keys in TABLE_KEYS.items():
        table = tables[logical]
        assert table["Type"] == "AWS::DynamoDB::Table"
        props = table["Properties"]
        assert "TableName" not in props, "let CloudFormation name tables so stacks never collide"
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["SSESpecification"]["SSEEnabled"] is True
        assert [(k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]] == keys
        types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
        assert all(types[name] == "S" for name, _ in keys)
        ttl = props.get("TimeToLiveSpecification")
        if logical in TTL_TABLES:
            assert ttl == {"AttributeName": "expiresAt", "Enabled": True}
        else:
            assert ttl is None or ttl.get("Enabled") is False
    messages = tables["MessagesTable"]
    assert messages["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert messages["DeletionPolicy"] == "Retain" and messages["UpdateReplacePolicy"] == "Retain"


def test_memberships_by_connection_index(resources):
    props = resources["MembershipsTable"]["Properties"]
    gsi, by_reader = props["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "ByConnection"
    assert [(k["AttributeName"], k["KeyType"]) for k in gsi["KeySchema"]] == [("connectionId", "HASH"), ("roomId", "RANGE")]
    assert gsi["Projection"]["ProjectionType"] == "KEYS_ONLY"
    assert {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}["connectionId"] == "S"
    # get_rooms: the rooms a user joined or read, with the read cursor the unread count starts from.
    assert by_reader["IndexName"] == "ByReader"
    assert [(k["AttributeName"], k["KeyType"]) for k in by_reader["KeySchema"]] == [("readerId", "HASH"), ("roomId", "RANGE")]
    assert by_reader["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["messageId"]}


def test_messages_by_change_index(resources):
    """A rejoin's changed older messages: room + change time, every attribute (their current copies
    in one Query), and the sort key a number (epoch ms) that only a change sets."""
    props = resources["MessagesTable"]["Properties"]
    (by_change,) = props["GlobalSecondaryIndexes"]
    assert by_change["IndexName"] == "ByChange"
    assert [(k["AttributeName"], k["KeyType"]) for k in by_change["KeySchema"]] == [("roomId", "HASH"), ("changedAtMs", "RANGE")]
    assert by_change["Projection"] == {"ProjectionType": "ALL"}
    assert {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}["changedAtMs"] == "N"


# ------------------------------------------------------------------ IAM

def test_no_broad_grants(resources):
    statements = _all_statements(resources)
    assert statements, "no IAM statements found: the walker is broken"
    for owner, statement in statements:
        actions = [a.lower() for a in _listify(statement["Action"])]
        assert "dynamodb:scan" not in actions, owner
        assert not any("*" in a for a in actions), (owner, actions)
        assert "NotAction" not in statement and "NotResource" not in statement, owner
        if any(a.startswith("dynamodb:") for a in actions):
            for resource in _listify(statement["Resource"]):
                assert resource != "*" and not (isinstance(resource, str) and resource.endswith(":*")), (owner, resource)
    for logical, function in _of_type(resources, "AWS::Serverless::Function").items():
        for policy in _listify(function["Properties"].get("Policies", [])):
            assert not isinstance(policy, str), f"{logical}: AWS managed policy {policy!r} is too broad"
            if isinstance(policy, dict) and "Statement" not in policy and "Ref" not in policy:
                pytest.fail(f"{logical}: SAM policy template {list(policy)} (DynamoDB*Policy templates include Scan)")


def test_manage_connections_scoped_to_this_stage(resources):
    found = 0
    for owner, statement in _all_statements(resources):
        actions = _listify(statement["Action"])
        if any(a.startswith("execute-api:") for a in actions):
            assert actions == ["execute-api:ManageConnections"], owner
            for resource in _listify(statement["Resource"]):
                assert _sub(resource) in MANAGE_CONNECTIONS_ARNS, (owner, resource)
                found += 1
    assert found


CLEANUP = {
    ("execute-api:ManageConnections", API_ARN_PREFIX + "${StageName}/POST/@connections/*"),
    ("dynamodb:Query", "MembershipsTable"),
    ("dynamodb:Query", "MembershipsTable/index/ByConnection"),
    ("dynamodb:DeleteItem", "MembershipsTable"),
    ("dynamodb:UpdateItem", "MembershipsTable"),
    ("dynamodb:GetItem", "MembershipsTable"),
    ("dynamodb:PutItem", "MembershipsTable"),
}
# Rate-limited functions close a connection that floods (DeleteConnection); nothing else may.
SHARD_DISPATCH = ("lambda:InvokeFunction", "FanoutFunction")
CLOSE_CONNECTION = ("execute-api:ManageConnections", API_ARN_PREFIX + "${StageName}/DELETE/@connections/*")
EXPECTED_GRANTS = {
    "ConnectFunction": set(),  # the authorizer decides; `$connect` stores nothing
    "DisconnectFunction": CLEANUP,
    "DefaultFunction": set(),
    "MessageFunction": set(),
    "PingFunction": set(),
    "JoinRoomFunction": CLEANUP | {
        ("dynamodb:GetItem", "MembershipsTable"), ("dynamodb:PutItem", "MembershipsTable"),
        ("dynamodb:Query", "MembershipsTable"), ("dynamodb:Query", "MessagesTable"),
        ("dynamodb:Query", "MessagesTable/index/ByChange"), ("dynamodb:UpdateItem", "MembershipsTable"),
        ("dynamodb:UpdateItem", "IdempotencyTable"), CLOSE_CONNECTION,
    },
    "LeaveRoomFunction": CLEANUP | {
        ("dynamodb:GetItem", "MembershipsTable"), ("dynamodb:DeleteItem", "MembershipsTable"),
        ("dynamodb:Query", "MembershipsTable"), ("dynamodb:UpdateItem", "IdempotencyTable"), CLOSE_CONNECTION,
    },
    "ChatMessageFunction": CLEANUP | {
        ("dynamodb:PutItem", "MessagesTable"), ("dynamodb:UpdateItem", "MembershipsTable"),
        ("dynamodb:GetItem", "IdempotencyTable"), ("dynamodb:PutItem", "IdempotencyTable"),
        ("dynamodb:UpdateItem", "IdempotencyTable"), CLOSE_CONNECTION, SHARD_DISPATCH,
    },
    "TypingFunction": CLEANUP | {("dynamodb:UpdateItem", "IdempotencyTable"), CLOSE_CONNECTION, SHARD_DISPATCH},
    "MarkReadFunction": CLEANUP | {
        ("dynamodb:UpdateItem", "MembershipsTable"), ("dynamodb:UpdateItem", "IdempotencyTable"), CLOSE_CONNECTION,
        SHARD_DISPATCH,
    },
    "GetHistoryFunction": {
        ("dynamodb:GetItem", "MembershipsTable"), ("dynamodb:Query", "MembershipsTable"),
        ("dynamodb:Query", "MessagesTable"), ("dynamodb:UpdateItem", "IdempotencyTable"), CLOSE_CONNECTION,
    },
    "EditMessageFunction": CLEANUP | {
        ("dynamodb:GetItem", "MessagesTable"), ("dynamodb:UpdateItem", "MessagesTable"),
        ("dynamodb:UpdateItem", "MembershipsTable"), ("dynamodb:UpdateItem", "IdempotencyTable"), CLOSE_CONNECTION,
    },
    "DeleteMessageFunction": CLEANUP | {
        ("dynamodb:GetItem", "MessagesTable"), ("dynamodb:UpdateItem", "MessagesTable"),
        ("dynamodb:UpdateItem", "MembershipsTable"), ("dynamodb:UpdateItem", "IdempotencyTable"), CLOSE_CONNECTION,
    },
    "ReactFunction": CLEANUP | {
        ("dynamodb:GetItem", "MessagesTable"), ("dynamodb:UpdateItem", "MessagesTable"),
        ("dynamodb:UpdateItem", "IdempotencyTable"), CLOSE_CONNECTION,
    },
    "GetRoomsFunction": {
        ("dynamodb:Query", "MembershipsTable/index/ByReader"), ("dynamodb:Query", "MessagesTable"), ("dynamodb:UpdateItem", "IdempotencyTable"), CLOSE_CONNECTION,
    },
    "GetParticipantsFunction": {
        ("dynamodb:GetItem", "MembershipsTable"), ("dynamodb:Query", "MembershipsTable"),
        ("dynamodb:UpdateItem", "IdempotencyTable"), CLOSE_CONNECTION,
    },
    "PresenceFunction": CLEANUP | {SHARD_DISPATCH},
    # A claim is one UpdateItem, a continuation's page plan one PutItem; a continuation dispatches
    # its shards to this same function.
    "FanoutFunction": CLEANUP | {("dynamodb:UpdateItem", "IdempotencyTable"), ("dynamodb:PutItem", "IdempotencyTable"),
                                 SHARD_DISPATCH},
    "AuthorizerFunction": {
        ("ssm:GetParameter", SSM_PARAMETER_ARN),
        ("kms:Decrypt", "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*"),
    },
}


@pytest.mark.parametrize("logical", sorted(EXPECTED_GRANTS))
def test_least_privilege_per_function(resources, logical):
    assert _function_grants(resources, logical) == EXPECTED_GRANTS[logical]


def test_one_policy_grants_the_invoke_of_the_fan_out_function(resources):
    """The broadcasting functions name ShardDispatchPolicy in their Policies; FanoutFunction, whose own
    ARN its Policies cannot name, gets the same policy through its `Roles`, and no other role does."""
    granting = [owner for owner, statement in _all_statements(resources)
                if SHARD_DISPATCH in _grants_of([statement])]
    assert granting == ["ShardDispatchPolicy"]
    assert resources["ShardDispatchPolicy"]["Properties"]["Roles"] == [{"Ref": "FanoutFunctionRole"}]
    holders = {logical for logical, grants in EXPECTED_GRANTS.items() if SHARD_DISPATCH in grants}
    assert {logical for logical in holders if _attached_to_role(resources, logical)} == {"FanoutFunction"}


def test_secret_decrypt_only_through_ssm(resources):
    statements = [s for p in resources["AuthorizerFunction"]["Properties"]["Policies"] for s in _statements(p)]
    for statement in statements:
        if "kms:Decrypt" in _listify(statement["Action"]):
            condition = statement["Condition"]["StringEquals"]
            assert _sub(condition["kms:ViaService"]) == "ssm.${AWS::Region}.amazonaws.com"


# ------------------------------------------------------------------ deploy readiness

def test_a_log_group_with_retention_per_function(template, resources):
    retention = template["Parameters"]["LogRetentionDays"]
    assert retention["Default"] in retention["AllowedValues"]
    groups = _of_type(resources, "AWS::Logs::LogGroup")
    named = {_sub(g["Properties"]["LogGroupName"]): g for g in groups.values()}
    # Every function of the template, so a new function without its log group fails here.
    functions = _of_type(resources, "AWS::Serverless::Function")
    assert set(named) == {f"/aws/lambda/${{{logical}}}" for logical in functions}
    for group in named.values():
        assert _ref(group["Properties"]["RetentionInDays"]) == "LogRetentionDays"


def test_management_endpoint_comes_from_the_api_id_and_region(template):
    for logical in BROADCASTERS:
        assert _sub(_env(template, logical)["MANAGEMENT_API_ENDPOINT"]) == \
            "https://${WebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${StageName}"


def test_rs256_without_jwks_url_is_refused_before_deploying(template):
    from parley_local.gateway.template import RuleRefused, load_stack

    rule = template["Rules"]["Rs256NeedsJwksUrl"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "AuthMode"}, "RS256"]}
    # `parley dev` evaluates the Rules as CloudFormation does before it creates anything.
    with pytest.raises(RuleRefused, match="JwksUrl"):
        load_stack(TEMPLATE_PATH, "rules", {"AuthMode": "RS256"})
    load_stack(TEMPLATE_PATH, "rules", {"AuthMode": "RS256", "JwksUrl": "https://idp.example.com/.well-known/jwks.json"})
    load_stack(TEMPLATE_PATH, "rules", {"AuthMode": "HS256"})


def test_websocketapi_cannot_declare_parleys_routes():
    """Why template.yaml keeps the raw AWS::ApiGatewayV2 form (docs/ARCHITECTURE.md): the SAM
    resource accepts only alphanumeric route keys. When a SAM release lifts that, this fails."""
    from parley_local.gateway import sam_transform
    from parley_local.gateway.cfn import TemplateError

    python = sam_transform.find_sam_python(ROOT)
    if python is None:
        pytest.skip("no .venv-sam: `make sam-cli`")
    doc = {
        "Transform": sam_transform.SAM_TRANSFORM,
        "Resources": {
            "Fn": {"Type": "AWS::Serverless::Function", "Properties": {"Runtime": "python3.13", "Handler": "a.b", "CodeUri": "."}},
            "Api": {"Type": "AWS::Serverless::WebSocketApi", "Properties": {
                "RouteSelectionExpression": "$request.body.type",
                "Routes": {key: {"FunctionArn": {"Fn::GetAtt": ["Fn", "Arn"]}} for key in ROUTES},
            }},
        },
    }
    with pytest.raises(TemplateError, match="join_room.*must be alphanumeric|must be alphanumeric"):
        sam_transform.expand(doc, TEMPLATE_PATH, {}, python)


# ------------------------------------------------------------------ outputs and samconfig

def test_outputs(template):
    outputs = template["Outputs"]
    assert _sub(outputs["WebSocketUrl"]["Value"]) == \
        "wss://${WebSocketApi}.execute-api.${AWS::Region}.amazonaws.com/${StageName}"
    assert _sub(outputs["ConnectionsUrl"]["Value"]) == \
        "https://${WebSocketApi}.execute-api.${AWS::Region}.amazonaws.com/${StageName}/@connections"
    for table in TABLE_KEYS:
        assert _ref(outputs[f"{table}Name"]["Value"]) == table


def test_samconfig(template):
    text = (ROOT / "samconfig.toml").read_text()
    # A plain `sam build` needs python3.13 on PATH; `make build` is the documented command.
    assert not re.search(r"(?<!make )\bsam build\b", text), "samconfig.toml must point at `make build`"
    assert "make build" in text
    config = tomllib.loads(text)
    assert str(config["version"]) == "0.1"
    assert config["default"]["build"]["parameters"]["cached"] is True
    assert config["default"]["validate"]["parameters"]["lint"] is True
    for env, stack, stage in (("default", "parley", "dev"), ("prod", "parley-prod", "prod")):
        deploy = config[env]["deploy"]["parameters"]
        assert deploy["stack_name"] == stack
        assert deploy["capabilities"] == "CAPABILITY_IAM"
        assert deploy["resolve_s3"] is True and deploy["confirm_changeset"] is True
        assert deploy["region"] == "us-east-1"
        overrides = dict(item.split("=", 1) for item in shlex.split(deploy["parameter_overrides"]))
        assert set(overrides) <= set(template["Parameters"]), set(overrides) - set(template["Parameters"])
        assert overrides["StageName"] == stage
    assert config["prod"]["build"]["parameters"]
    prod = dict(i.split("=", 1) for i in shlex.split(config["prod"]["deploy"]["parameters"]["parameter_overrides"]))
    assert prod["LogLevel"] == "WARNING"
    assert prod["AllowedOrigins"].startswith("https://")


# ------------------------------------------------------------------ sam validate / sam build

SAM_VENV_BIN = ROOT / ".venv-sam" / "bin"  # `make sam-cli`: SAM CLI pins boto3 and pydantic, so it has its own venv


def _sam_env() -> dict:
    env = dict(os.environ)
    # sam's python workflow needs `python3.13` on PATH: the venv running these tests has it.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    env["AWS_REGION"] = env["AWS_DEFAULT_REGION"]
    env["SAM_CLI_TELEMETRY"] = "0"
    return env


def _sam() -> str:
    for sam in (SAM_VENV_BIN / "sam", Path(sys.executable).parent / "sam"):
        if sam.exists():
            return str(sam)
    return "sam"


_timeout_600 = pytest.mark.timeout(600) if importlib.util.find_spec("pytest_timeout") else (lambda f: f)


def _repo_templates() -> list[Path]:
    """Every CloudFormation/SAM template in the repository: Parley's and the gateway's fixtures."""
    fixtures = sorted((ROOT / "tests" / "gateway" / "fixtures").rglob("template*.yaml"))
    assert len(fixtures) >= 4
    return [TEMPLATE_PATH, *fixtures]


@pytest.mark.parametrize("path", _repo_templates(), ids=lambda p: str(p.relative_to(ROOT)))
def test_sam_validate_lint(tmp_path, path):
    # cwd is a temp dir so nothing is written into the repo.
    result = subprocess.run(
        [_sam(), "validate", "--lint", "--template-file", str(path)],
        cwd=tmp_path, env=_sam_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", _repo_templates(), ids=lambda p: str(p.relative_to(ROOT)))
def test_cfn_lint(path):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(path)],
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def sam_build(tmp_path_factory):
    work = tmp_path_factory.mktemp("sam")
    build_dir = work / "build"
    # cwd is the temp dir: the repo's samconfig.toml is not read and `.aws-sam` lands here, not in the repo.
    result = subprocess.run(
        [_sam(), "build", "--template-file", str(TEMPLATE_PATH), "--base-dir", str(ROOT),
         "--build-dir", str(build_dir), "--cache-dir", str(work / "cache")],
        cwd=work, env=_sam_env(), capture_output=True, text=True, timeout=600,
    )
    return result, build_dir


@_timeout_600
def test_sam_build(sam_build):
    result, build_dir = sam_build
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    layer = build_dir / "CommonLayer" / "python"
    assert (layer / "parley" / "__init__.py").is_file(), sorted(p.name for p in layer.iterdir()) if layer.exists() else "no layer"
    assert not (layer / "python").exists(), "layer content nested one level too deep (/opt/python/python)"
    for package in ("pynamodb", "jwt", "aws_lambda_powertools", "pydantic_core"):
        assert (layer / package).is_dir(), f"{package} missing from the built layer"
    assert list((layer / "pydantic_core").glob("*aarch64*.so")), "the layer must be built for arm64"
    for logical in FUNCTIONS:
        assert (build_dir / logical / "app.py").is_file(), logical
    built, matches = decode_str((build_dir / "template.yaml").read_text())
    assert not matches
    assert built["Resources"]["CommonLayer"]["Properties"]["ContentUri"] == "CommonLayer"


def test_fanout_writes_only_its_own_items_of_the_idempotency_table(resources):
    """The fan-out function shares IdempotencyTable with users' idempotency records and rate
    counters; its grant there is limited to the key prefixes of shard claims and page plans."""
    from parley.aws.keys import fanout_claim_key, fanout_plan_key, idempotency_key, rate_counter_key

    statements = [s for p in resources["FanoutFunction"]["Properties"]["Policies"] for s in _statements(p)
                  if {"Fn::GetAtt": ["IdempotencyTable", "Arn"]} in _listify(s.get("Resource", []))]
    assert statements
    for statement in statements:
        patterns = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        assert sorted(patterns) == ["fanout#*", "fanplan#*"]
        # The keys the store really writes match them; a user's idempotency key does not.
        for key in (fanout_claim_key("d1", 3), fanout_plan_key("d1", "conn-9")):
            assert any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns), key
        for key in (idempotency_key("alice", "lobby", "m1"), rate_counter_key("chat", "alice", 7)):
            assert not any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns), key
