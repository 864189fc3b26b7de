"""Load CloudFormation/SAM YAML and resolve intrinsic functions to local values.

Why a module of its own: the gateway must run any SAM template unchanged, so
`!Ref`, `!GetAtt`, `!Sub`, `!Join`, `!Select`, `!If` and friends have to be
evaluated the way CloudFormation would, but with *local* physical values
(function names, table names, ARNs in the fake account 123456789012). The
WebSocket/Lambda/DynamoDB interpretation of the resolved template lives in
`template.py`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Callable

import yaml

from ..local_aws.account import ACCOUNT_ID, REGION

PARTITION = "aws"

NO_VALUE = object()  # AWS::NoValue: the enclosing key or list item disappears

_SHORT_TAGS = {
    "Ref": "Ref",
    "Condition": "Condition",
    "GetAtt": "Fn::GetAtt",
    "Sub": "Fn::Sub",
    "Join": "Fn::Join",
    "Select": "Fn::Select",
    "Split": "Fn::Split",
    "If": "Fn::If",
    "Equals": "Fn::Equals",
    "Not": "Fn::Not",
    "And": "Fn::And",
    "Or": "Fn::Or",
    "FindInMap": "Fn::FindInMap",
    "Base64": "Fn::Base64",
    "GetAZs": "Fn::GetAZs",
    "ImportValue": "Fn::ImportValue",
    "Cidr": "Fn::Cidr",
    "Transform": "Fn::Transform",
    "ToJsonString": "Fn::ToJsonString",
    "Length": "Fn::Length",
}


class TemplateError(Exception):
    """The template is malformed or uses something the local gateway cannot resolve."""


class _CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader that understands the CloudFormation short-form tags (`!Ref` ...).

    libyaml's parser when PyYAML has it (the same safe constructors): the pure-Python one took
    about 0.13 s of `parley dev`'s start for Parley's template, and the template is read twice.
    """


def _make_constructor(fn_name: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if fn_name == "Fn::GetAtt" and isinstance(value, str):
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {fn_name: value}

    return construct


for _tag, _fn in _SHORT_TAGS.items():
    _CfnLoader.add_constructor(f"!{_tag}", _make_constructor(_fn))


def load_yaml(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation YAML (or JSON) template into plain dicts, tags turned into `Fn::*` keys."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:  # one line naming the place, not a parser traceback
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise TemplateError(f"{path}{where}: not valid YAML ({problem})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{path}: cannot be read ({exc})") from None
    if not isinstance(doc, dict):
        raise TemplateError(f"{path}: not a CloudFormation template")
    return doc


def local_api_id(stack_name: str, logical_id: str) -> str:
    """A stable, AWS-looking 10-character API id (lower-case alphanumerics)."""
    digest = hashlib.sha256(f"{stack_name}/{logical_id}".encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(alphabet[b % len(alphabet)] for b in digest[:10])


class Resolver:
    """Evaluates intrinsic functions against parameters, pseudo parameters and local resource names."""

    def __init__(self, template: dict[str, Any], stack_name: str, parameters: dict[str, str]):
        self.template = template
        self.stack_name = stack_name
        self.resources: dict[str, dict[str, Any]] = template.get("Resources") or {}
        self.mappings: dict[str, Any] = template.get("Mappings") or {}
        self.conditions_src: dict[str, Any] = template.get("Conditions") or {}
        self._conditions: dict[str, bool] = {}
        self._names: dict[str, str] = {}
        self._resolving: set[str] = set()
        self.parameters = self._parameter_values(template.get("Parameters") or {}, parameters)

    # -- parameters and conditions ------------------------------------------------

    def _parameter_values(self, declared: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            spec = spec or {}
            if name in overrides:
                raw: Any = overrides[name]
            elif "Default" in spec:
                raw = spec["Default"]
            else:
                raise TemplateError(f"parameter {name} has no Default: pass --parameter-overrides {name}=VALUE")
            if str(spec.get("Type", "String")).startswith("List<") or spec.get("Type") == "CommaDelimitedList":
                values[name] = raw if isinstance(raw, list) else [s.strip() for s in str(raw).split(",")]
            else:
                values[name] = raw if isinstance(raw, str) else json.dumps(raw) if isinstance(raw, bool) else str(raw)
        for name in overrides:
            if name not in values:
                values[name] = overrides[name]
        return values

    def condition(self, name: str) -> bool:
        """Evaluate a named condition from the template's Conditions section (memoised)."""
        if name not in self._conditions:
            if name not in self.conditions_src:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = bool(self.resolve(self.conditions_src[name]))
        return self._conditions[name]

    def resource_enabled(self, logical_id: str) -> bool:
        cond = self.resources.get(logical_id, {}).get("Condition")
        return True if cond is None else self.condition(cond)

    # -- local physical names -----------------------------------------------------

    def resource_type(self, logical_id: str) -> str:
        return str(self.resources.get(logical_id, {}).get("Type", ""))

    def props(self, logical_id: str) -> dict[str, Any]:
        return self.resources.get(logical_id, {}).get("Properties") or {}

    def _named(self, logical_id: str, prop: str) -> str:
        """The resource's explicit name property, else `{stack}-{LogicalId}` (CloudFormation adds a suffix; we don't)."""
        if logical_id in self._names:
            return self._names[logical_id]
        if logical_id in self._resolving:
            raise TemplateError(f"circular reference through {logical_id}")
        self._resolving.add(logical_id)
        try:
            explicit = self.props(logical_id).get(prop)
            name = str(self.resolve(explicit)) if explicit is not None else f"{self.stack_name}-{logical_id}"
        finally:
            self._resolving.discard(logical_id)
        self._names[logical_id] = name
        return name

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": PARTITION,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{self.stack_name}/00000000-0000-0000-0000-000000000000",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name not in self.resources:
            raise TemplateError(f"!Ref {name}: no such parameter or resource")
        rtype = self.resource_type(name)
        if rtype in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            return self._named(name, "FunctionName")
        if rtype in ("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable"):
            return self._named(name, "TableName")
        if rtype in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
            layer = self._named(name, "LayerName")
            return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:{layer}:1"
        if rtype == "AWS::ApiGatewayV2::Api":
            return local_api_id(self.stack_name, name)
        if rtype == "AWS::SSM::Parameter":
            return self._named(name, "Name")
        if rtype == "AWS::IAM::Role":
            return self._named(name, "RoleName")
        return name

    def get_att(self, logical_id: str, attr: str) -> Any:
        if logical_id not in self.resources:
            raise TemplateError(f"!GetAtt {logical_id}.{attr}: no such resource")
        rtype = self.resource_type(logical_id)
        if rtype in ("AWS::Serverless::Function", "AWS::Lambda::Function") and attr == "Arn":
            return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.ref(logical_id)}"
        if rtype in ("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable"):
            arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{self.ref(logical_id)}"
            return arn if attr == "Arn" else f"{arn}/stream/2024-01-01T00:00:00.000"
        if rtype == "AWS::ApiGatewayV2::Api":
            api_id = self.ref(logical_id)
            if attr == "ApiEndpoint":
                return f"wss://{api_id}.execute-api.{REGION}.amazonaws.com"
            return api_id
        if rtype == "AWS::IAM::Role" and attr == "Arn":
            return f"arn:aws:iam::{ACCOUNT_ID}:role/{self.ref(logical_id)}"
        if rtype == "AWS::SSM::Parameter":
            return self.ref(logical_id) if attr == "Value" else self.ref(logical_id)
        return f"arn:aws:local:{REGION}:{ACCOUNT_ID}:{logical_id}/{attr}"

    # -- the evaluator ------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        """Return `value` with every intrinsic function evaluated; AWS::NoValue entries dropped."""
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(str(arg))
            if key == "Condition" and isinstance(arg, str):
                return self.condition(arg)
            if key.startswith("Fn::"):
                return self._fn(key, arg)
        out: dict[str, Any] = {}
        for k, v in value.items():
            r = self.resolve(v)
            if r is not NO_VALUE:
                out[k] = r
        return out

    def _fn(self, key: str, arg: Any) -> Any:
        if key == "Fn::GetAtt":
            parts = arg.split(".", 1) if isinstance(arg, str) else [self.resolve(a) for a in arg]
            return self.get_att(str(parts[0]), str(parts[1]))
        if key == "Fn::Sub":
            if isinstance(arg, list):
                text, variables = arg[0], {k: self.resolve(v) for k, v in (arg[1] or {}).items()}
            else:
                text, variables = arg, {}
            return self._sub(str(text), variables)
        if key == "Fn::Join":
            sep, items = arg
            return str(sep).join(_to_str(v) for v in self.resolve(items))
        if key == "Fn::Select":
            index, items = self.resolve(arg[0]), self.resolve(arg[1])
            return items[int(index)]
        if key == "Fn::Split":
            sep, text = arg
            return str(self.resolve(text)).split(str(sep))
        if key == "Fn::If":
            cond, yes, no = arg
            return self.resolve(yes if self.condition(cond) else no)
        if key == "Fn::Equals":
            a, b = (self.resolve(x) for x in arg)
            return _to_str(a) == _to_str(b)
        if key == "Fn::Not":
            return not self._truth(arg[0])
        if key == "Fn::And":
            return all(self._truth(x) for x in arg)
        if key == "Fn::Or":
            return any(self._truth(x) for x in arg)
        if key == "Fn::FindInMap":
            m, k1, k2 = (self.resolve(x) for x in arg[:3])
            return self.mappings[m][k1][k2]
        if key == "Fn::Base64":
            return base64.b64encode(str(self.resolve(arg)).encode()).decode()
        if key == "Fn::GetAZs":
            return [f"{REGION}a", f"{REGION}b", f"{REGION}c"]
        if key == "Fn::ToJsonString":
            return json.dumps(self.resolve(arg), separators=(",", ":"))
        if key == "Fn::Length":
            return len(self.resolve(arg))
        if key in ("Fn::Contains", "Fn::EachMemberEquals", "Fn::EachMemberIn"):  # the Rules-only functions
            left, right = (self.resolve(x) for x in arg)
            if key == "Fn::Contains":
                return _to_str(right) in [_to_str(v) for v in left]
            if key == "Fn::EachMemberEquals":
                return all(_to_str(v) == _to_str(right) for v in left)
            return all(_to_str(v) in [_to_str(r) for r in right] for v in left)
        if key == "Fn::ImportValue":
            return f"imported-{self.resolve(arg)}"
        raise TemplateError(f"{key} is not supported by the local gateway")

    def _truth(self, cond: Any) -> bool:
        if isinstance(cond, dict) and set(cond) == {"Condition"}:
            return self.condition(cond["Condition"])
        return bool(self.resolve(cond))

    def _sub(self, text: str, variables: dict[str, Any]) -> str:
        def repl(m: re.Match[str]) -> str:
            expr = m.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            expr = expr.strip()
            if expr in variables:
                return _to_str(variables[expr])
            if "." in expr and not expr.startswith("AWS::"):
                logical, attr = expr.split(".", 1)
                return _to_str(self.get_att(logical, attr))
            return _to_str(self.ref(expr))

        return re.sub(r"\$\{([^}]*)\}", repl, text)


def _to_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_to_str(v) for v in value)
    return str(value)
