"""Interpret a SAM template as the pieces the local gateway runs: WebSocket APIs, functions, tables.

Why: nothing is hard-coded. A route, function, environment variable, layer or
table added to `template.yaml` is live locally on the next start, because this
module discovers them from the `AWS::ApiGatewayV2::*`, `AWS::Lambda::*` and
`AWS::DynamoDB::Table` resources (intrinsics resolved by `cfn.Resolver`) of the
template as CloudFormation receives it: a template with the SAM transform is
first expanded by aws-sam-translator (`sam_transform`). Without a SAM
interpreter, the built-in reading of `AWS::Serverless::Function`,
`LayerVersion` and `SimpleTable` (with Globals) is the fallback.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..local_aws.account import ACCOUNT_ID, REGION
from ..parameter_overrides import undeclared
from . import sam_transform
from .cfn import Resolver, TemplateError, load_yaml

__all__ = [
    "AuthorizerSpec",
    "FunctionSpec",
    "RouteSpec",
    "RuleRefused",
    "Stack",
    "StreamEventSource",
    "TableSpec",
    "TemplateError",
    "WebSocketApiSpec",
    "load_stack",
]

SAM_MODES = ("auto", "required", "off")
# What the built-in reader understands of `AWS::Serverless::*` when the SAM transform cannot run.
BUILT_IN_SERVERLESS = {"AWS::Serverless::Function", "AWS::Serverless::LayerVersion", "AWS::Serverless::SimpleTable"}

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
LAYER_TYPES = ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion")
INTEGRATION_TIMEOUT_MS = 29_000


@dataclass
class FunctionSpec:
    """One Lambda function as the local runtime needs it."""

    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    runtime: str
    timeout_s: float
    memory_mb: int
    environment: dict[str, str]
    layer_dirs: list[Path]


@dataclass
class AuthorizerSpec:
    """A REQUEST (Lambda) authorizer attached to the `$connect` route."""

    logical_id: str
    name: str
    function: str  # logical id of the FunctionSpec
    identity_sources: list[str]


@dataclass
class RouteSpec:
    """A route key and what it integrates with."""

    key: str
    function: str | None  # logical id; None for MOCK/unsupported integrations
    authorizer: AuthorizerSpec | None = None
    integration_type: str = "AWS_PROXY"  # as the template declares it: what `parley dev` cannot run, the route table says
    integration_timeout_ms: int = INTEGRATION_TIMEOUT_MS
    route_response: bool = False  # RouteResponseSelectionExpression + a `$default` RouteResponse


@dataclass
class WebSocketApiSpec:
    logical_id: str
    name: str
    api_id: str
    selection_expression: str
    routes: dict[str, RouteSpec] = field(default_factory=dict)
    stage_name: str | None = None  # the template's AWS::ApiGatewayV2::Stage, if it has one


@dataclass
class TableSpec:
    """A DynamoDB table as CreateTable arguments plus its TTL attribute."""

    logical_id: str
    name: str
    create_args: dict[str, Any]
    ttl_attribute: str | None


@dataclass
class StreamEventSource:
    """A DynamoDB stream feeding a function (an event source mapping), as the local poller needs it."""

    logical_id: str  # the AWS::Lambda::EventSourceMapping (or the SAM event) that declares it
    function: str  # logical id of the FunctionSpec
    table: str  # logical id of the table whose stream is read
    stream_arn: str
    filter_patterns: list[str]  # FilterCriteria.Filters[].Pattern, as written (JSON text)
    batch_size: int = 100
    batching_window_s: float = 0.0
    starting_position: str = "LATEST"
    max_retries: int = -1  # MaximumRetryAttempts; -1 is Lambda's "until the record expires"


@dataclass
class Stack:
    template_path: Path
    stack_name: str
    parameters: dict[str, Any]
    functions: dict[str, FunctionSpec]
    apis: list[WebSocketApiSpec]
    tables: list[TableSpec]
    source: str = "template as written"  # how the template was read, for the banner
    stream_sources: list[StreamEventSource] = field(default_factory=list)
    # The parameter values given (`--parameter-overrides`), not the defaults, and those the template does not
    # declare too: a redeploy reads the template again with all of them, so a Default changed on disk applies,
    # and so does an override once the template declares its parameter, as on `sam deploy`.
    overrides: dict[str, str] = field(default_factory=dict)
    undeclared_overrides: list[str] = field(default_factory=list)  # of `overrides`, those ignored: no such parameter

    @property
    def api(self) -> WebSocketApiSpec:
        """The WebSocket API the gateway serves (the first one declared)."""
        if not self.apis:
            raise TemplateError(f"{self.template_path}: no AWS::ApiGatewayV2::Api with ProtocolType WEBSOCKET")
        return self.apis[0]


class RuleRefused(TemplateError):
    """A template Rule's assertion fails for these parameters: CloudFormation would not deploy them."""


def _merge_globals(glob: Any, local: Any) -> Any:
    """SAM Globals semantics: maps merge (resource wins), lists concatenate (globals first), scalars: resource wins."""
    if isinstance(glob, dict) and isinstance(local, dict):
        out = copy.deepcopy(glob)
        for k, v in local.items():
            out[k] = _merge_globals(glob[k], v) if k in glob else v
        return out
    if isinstance(glob, list) and isinstance(local, list):
        return copy.deepcopy(glob) + local
    return local


def _env_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_FUNCTION_IN_ARN = re.compile(r":function:([A-Za-z0-9_.-]+)")
_TABLE_IN_STREAM_ARN = re.compile(r":table/([A-Za-z0-9_.-]+)/stream/")


class _Builder:
    def __init__(self, path: Path, doc: dict[str, Any], stack_name: str, overrides: dict[str, str]):
        self.path = path
        self.base = path.parent
        self.doc = doc
        self.resolver = Resolver(self.doc, stack_name, overrides)
        self.resources: dict[str, dict[str, Any]] = self.doc.get("Resources") or {}
        self.globals: dict[str, Any] = ((self.doc.get("Globals") or {}).get("Function")) or {}

    def of_type(self, *types: str) -> list[str]:
        return [
            lid
            for lid, res in self.resources.items()
            if res.get("Type") in types and self.resolver.resource_enabled(lid)
        ]

    def props(self, logical_id: str) -> dict[str, Any]:
        raw = self.resources[logical_id].get("Properties") or {}
        rtype = self.resources[logical_id].get("Type")
        if rtype == "AWS::Serverless::Function" and self.globals:
            raw = _merge_globals(self.globals, raw)
        resolved = self.resolver.resolve(raw)
        return resolved if isinstance(resolved, dict) else {}

    # -- functions --------------------------------------------------------------

    def layers(self) -> dict[str, list[Path]]:
        """Layer ARN -> the sys.path entries Lambda would give it.

        A prebuilt layer's content lands in /opt, so `ContentUri/python` goes on
        the path; with `Metadata: BuildMethod: python3.x`, `sam build` puts the
        ContentUri's contents *into* `python/`, so ContentUri itself does.
        """
        out: dict[str, list[Path]] = {}
        for lid in self.of_type(*LAYER_TYPES):
            props = self.props(lid)
            uri = sam_transform.local_code_path(props.get("ContentUri", props.get("Content")))
            if uri is None:
                continue
            root = (self.base / uri).resolve()
            built = str((self.resources[lid].get("Metadata") or {}).get("BuildMethod", "")).startswith("python")
            paths = [root / "python"] if (root / "python").is_dir() else []
            if built or not paths:
                paths.append(root)
            out[str(self.resolver.ref(lid))] = paths
        return out

    def functions(self) -> dict[str, FunctionSpec]:
        layers = self.layers()
        out: dict[str, FunctionSpec] = {}
        for lid in self.of_type(*FUNCTION_TYPES):
            props = self.props(lid)
            code = sam_transform.local_code_path(props.get("CodeUri", props.get("Code", ".")))
            if code is None:
                continue  # S3 / inline code cannot run locally
            name = str(self.resolver.ref(lid))
            env = ((props.get("Environment") or {}).get("Variables")) or {}
            layer_dirs = [p for arn in props.get("Layers") or [] for p in layers.get(str(arn), [])]
            out[lid] = FunctionSpec(
                logical_id=lid,
                name=name,
                arn=f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}",
                code_dir=(self.base / code).resolve(),
                handler=str(props.get("Handler", "app.lambda_handler")),
                runtime=str(props.get("Runtime", "python3.13")),
                timeout_s=float(props.get("Timeout", 3)),
                memory_mb=int(props.get("MemorySize", 128)),
                environment={str(k): _env_str(v) for k, v in env.items()},
                layer_dirs=layer_dirs,
            )
        return out

    # -- WebSocket APIs ---------------------------------------------------------

    def _function_for_uri(self, uri: Any, functions: dict[str, FunctionSpec]) -> str | None:
        m = _FUNCTION_IN_ARN.search(str(uri or ""))
        if not m:
            return None
        by_name = {f.name: f.logical_id for f in functions.values()}
        return by_name.get(m.group(1))

    def apis(self, functions: dict[str, FunctionSpec]) -> list[WebSocketApiSpec]:
        apis: dict[str, WebSocketApiSpec] = {}
        by_api_id: dict[str, str] = {}
        for lid in self.of_type("AWS::ApiGatewayV2::Api"):
            props = self.props(lid)
            if str(props.get("ProtocolType", "")).upper() != "WEBSOCKET":
                continue
            api_id = str(self.resolver.ref(lid))
            apis[lid] = WebSocketApiSpec(
                logical_id=lid,
                name=str(props.get("Name", lid)),
                api_id=api_id,
                selection_expression=str(props.get("RouteSelectionExpression", "$request.body.action")),
            )
            by_api_id[api_id] = lid
        for lid in self.of_type("AWS::ApiGatewayV2::Stage"):
            props = self.props(lid)
            staged = apis.get(by_api_id.get(str(props.get("ApiId")), ""))
            if staged is not None and staged.stage_name is None and props.get("StageName"):
                staged.stage_name = str(props["StageName"])

        def api_of(props: dict[str, Any]) -> WebSocketApiSpec | None:
            lid = by_api_id.get(str(props.get("ApiId")))
            return apis.get(lid) if lid else None

        integrations: dict[str, dict[str, Any]] = {lid: self.props(lid) for lid in self.of_type("AWS::ApiGatewayV2::Integration")}
        authorizers: dict[str, AuthorizerSpec] = {}
        for lid in self.of_type("AWS::ApiGatewayV2::Authorizer"):
            props = self.props(lid)
            fn = self._function_for_uri(props.get("AuthorizerUri"), functions)
            if fn is None or str(props.get("AuthorizerType", "REQUEST")).upper() != "REQUEST":
                continue
            sources = props.get("IdentitySource") or []
            if isinstance(sources, str):
                sources = [s.strip() for s in sources.split(",") if s.strip()]
            authorizers[lid] = AuthorizerSpec(lid, str(props.get("Name", lid)), fn, [str(s) for s in sources])

        route_ids: dict[str, RouteSpec] = {}
        for lid in self.of_type("AWS::ApiGatewayV2::Route"):
            props = self.props(lid)
            api = api_of(props)
            if api is None:
                continue
            target = str(props.get("Target", ""))
            integ_id = target.split("/", 1)[1] if target.startswith("integrations/") else ""
            integ = integrations.get(integ_id, {})
            function = None
            integration_type = (str(integ.get("IntegrationType", "AWS_PROXY")).upper() if integ
                                else "MISSING" if integ_id else "NONE")
            if integration_type in ("AWS_PROXY", "AWS"):
                function = self._function_for_uri(integ.get("IntegrationUri"), functions)
            authorizer = None
            if str(props.get("AuthorizationType", "NONE")).upper() == "CUSTOM":
                authorizer = authorizers.get(str(props.get("AuthorizerId")))
            route = RouteSpec(
                key=str(props["RouteKey"]),
                function=function,
                authorizer=authorizer,
                integration_type=integration_type,
                integration_timeout_ms=min(int(integ.get("TimeoutInMillis", INTEGRATION_TIMEOUT_MS)), INTEGRATION_TIMEOUT_MS),
            )
            route.route_response = "RouteResponseSelectionExpression" in props
            api.routes[route.key] = route
            route_ids[lid] = route

        with_response: set[str] = set()
        for lid in self.of_type("AWS::ApiGatewayV2::RouteResponse"):
            props = self.props(lid)
            if str(props.get("RouteResponseKey")) == "$default":
                with_response.add(str(props.get("RouteId")))
        for rid, route in route_ids.items():
            route.route_response = route.route_response and rid in with_response
        return list(apis.values())

    # -- DynamoDB stream event sources --------------------------------------------

    def stream_sources(self, functions: dict[str, FunctionSpec], tables: list[TableSpec]) -> list[StreamEventSource]:
        """DynamoDB stream mappings: `AWS::Lambda::EventSourceMapping` (what the SAM transform makes)
        and, for the built-in reader, a Serverless function's `Events` of `Type: DynamoDB`."""
        table_by_name = {t.name: t.logical_id for t in tables}
        fn_by_name = {f.name: f.logical_id for f in functions.values()}
        declared: list[tuple[str, str, dict[str, Any]]] = []  # (declaring id, function logical id, mapping properties)
        for lid in self.of_type("AWS::Lambda::EventSourceMapping"):
            props = self.props(lid)
            fn = _FUNCTION_IN_ARN.search(str(props.get("FunctionName", "")))
            name = fn.group(1) if fn else str(props.get("FunctionName", ""))
            if name in fn_by_name:
                declared.append((lid, fn_by_name[name], {**props, "Stream": props.get("EventSourceArn")}))
        for lid in self.of_type("AWS::Serverless::Function"):
            if lid not in functions:
                continue
            for event_id, event in (self.props(lid).get("Events") or {}).items():
                if isinstance(event, dict) and event.get("Type") == "DynamoDB":
                    declared.append((f"{lid}.{event_id}", lid, event.get("Properties") or {}))
        out: list[StreamEventSource] = []
        for lid, fn, props in declared:
            if str(props.get("Enabled", "true")).lower() == "false":
                continue
            arn = str(props.get("Stream", ""))
            m = _TABLE_IN_STREAM_ARN.search(arn)
            table = table_by_name.get(m.group(1)) if m else None
            if table is None:
                continue  # not a stream of a table this stack creates
            filters = ((props.get("FilterCriteria") or {}).get("Filters")) or []
            out.append(StreamEventSource(
                logical_id=lid, function=fn, table=table, stream_arn=arn,
                filter_patterns=[str(f.get("Pattern", "")) for f in filters],
                batch_size=int(props.get("BatchSize", 100)),
                batching_window_s=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                starting_position=str(props.get("StartingPosition", "LATEST")),
                max_retries=int(props.get("MaximumRetryAttempts", -1)),
            ))
        return out

    # -- rules ------------------------------------------------------------------

    def check_rules(self) -> None:
        """Refuse parameter values the template's Rules refuse, as CloudFormation does before creating anything.

        A rule that uses what only CloudFormation can answer (`Fn::ValueOf`, `Fn::RefAll` on
        AWS-specific parameter types) is not checked locally.
        """
        for name, rule in (self.doc.get("Rules") or {}).items():
            try:
                applies = "RuleCondition" not in rule or self.resolver.resolve(rule["RuleCondition"]) is True
                if not applies:
                    continue
                for assertion in rule.get("Assertions") or []:
                    if self.resolver.resolve(assertion.get("Assert")) is not True:
                        why = assertion.get("AssertDescription") or f"rule {name} failed"
                        raise RuleRefused(f"{self.path.name}: parameters refused by rule {name}: {why}")
            except RuleRefused:
                raise
            except (TemplateError, KeyError, TypeError, ValueError):
                continue

    # -- tables -----------------------------------------------------------------

    def tables(self) -> list[TableSpec]:
        out: list[TableSpec] = []
        for lid in self.of_type("AWS::DynamoDB::Table"):
            props = self.props(lid)
            name = str(self.resolver.ref(lid))
            args: dict[str, Any] = {
                "TableName": name,
                "AttributeDefinitions": props["AttributeDefinitions"],
                "KeySchema": props["KeySchema"],
            }
            billing = props.get("BillingMode", "PROVISIONED")
            args["BillingMode"] = billing
            default_tp = {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
            if billing == "PROVISIONED":
                args["ProvisionedThroughput"] = _ints(props.get("ProvisionedThroughput") or default_tp)
            for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
                if props.get(key):
                    idx = copy.deepcopy(props[key])
                    for i in idx:
                        i.pop("ContributorInsightsSpecification", None)
                        if key == "GlobalSecondaryIndexes" and billing == "PROVISIONED":
                            i["ProvisionedThroughput"] = _ints(i.get("ProvisionedThroughput") or default_tp)
                        elif "ProvisionedThroughput" in i:
                            i["ProvisionedThroughput"] = _ints(i["ProvisionedThroughput"])
                    args[key] = idx
            if props.get("StreamSpecification"):
                args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
            ttl = props.get("TimeToLiveSpecification") or {}
            enabled = str(ttl.get("Enabled", "false")).lower() == "true"
            out.append(TableSpec(lid, name, args, str(ttl["AttributeName"]) if enabled and ttl.get("AttributeName") else None))
        type_map = {"String": "S", "Number": "N", "Binary": "B"}
        for lid in self.of_type("AWS::Serverless::SimpleTable"):
            props = self.props(lid)
            name = str(self.resolver.ref(lid))
            pk = props.get("PrimaryKey") or {"Name": "id", "Type": "String"}
            args = {
                "TableName": name,
                "AttributeDefinitions": [{"AttributeName": pk["Name"], "AttributeType": type_map.get(pk.get("Type", "String"), "S")}],
                "KeySchema": [{"AttributeName": pk["Name"], "KeyType": "HASH"}],
                "BillingMode": "PAY_PER_REQUEST",
            }
            out.append(TableSpec(lid, name, args, None))
        return out


def _ints(tp: dict[str, Any]) -> dict[str, int]:
    return {k: int(v) for k, v in tp.items()}


def _as_deployed(path: Path, doc: dict[str, Any], overrides: dict[str, str], sam: str) -> tuple[dict[str, Any], str]:
    """The template CloudFormation would receive, and a line saying how it was obtained.

    `sam`: "auto" expands with aws-sam-translator when the template declares the SAM
    transform and a SAM interpreter is found (else falls back to the built-in reader);
    "required" fails instead of falling back; "off" always uses the built-in reader.
    """
    if sam not in SAM_MODES:
        raise ValueError(f"sam must be one of {SAM_MODES}, not {sam!r}")
    if sam == "off" or not sam_transform.uses_sam_transform(doc):
        return doc, "template as written (no SAM transform)" if sam != "off" else "built-in reader (SAM transform off)"
    python = sam_transform.find_sam_python(path.parent)
    if python is None:
        if sam == "required":
            raise TemplateError(f"{path}: no Python with aws-sam-translator found; run `make sam-cli` or set ${sam_transform.SAM_PYTHON_ENV}")
        beyond = sorted({
            str(r.get("Type")) for r in (doc.get("Resources") or {}).values()
            if isinstance(r, dict) and str(r.get("Type", "")).startswith("AWS::Serverless::") and r.get("Type") not in BUILT_IN_SERVERLESS
        })
        if beyond:
            raise TemplateError(
                f"{path}: {', '.join(beyond)} needs the SAM transform, and no Python with aws-sam-translator was found: "
                f"run `make sam-cli` (creates .venv-sam) or set ${sam_transform.SAM_PYTHON_ENV} to one"
            )
        return doc, "built-in reader: no .venv-sam (run `make sam-cli` for the SAM transform `sam deploy` applies)"
    expansion = sam_transform.expand(doc, path, overrides, python)
    how = "cached" if expansion.cached else "expanded now"
    return expansion.template, f"SAM transform (aws-sam-translator {expansion.translator_version}, {how})"


def load_stack(
    path: str | Path, stack_name: str = "local", parameter_overrides: dict[str, str] | None = None, sam: str = "auto",
) -> Stack:
    """Read `path` and return everything the gateway needs to serve it locally. Of `parameter_overrides`, those
    the template does not declare are ignored, as `sam deploy` ignores them (it sends only the template's)."""
    p = Path(path).resolve()
    given = dict(parameter_overrides or {})
    raw = load_yaml(p)
    ignored = undeclared(given, raw.get("Parameters") or {})
    overrides = {name: value for name, value in given.items() if name not in ignored}
    doc, source = _as_deployed(p, raw, overrides, sam)
    b = _Builder(p, doc, stack_name, overrides)
    b.check_rules()
    functions = b.functions()
    tables = b.tables()
    return Stack(
        template_path=p,
        stack_name=stack_name,
        parameters=b.resolver.parameters,
        functions=functions,
        apis=b.apis(functions),
        tables=tables,
        source=source,
        stream_sources=b.stream_sources(functions, tables),
        overrides=given,
        undeclared_overrides=ignored,
    )
