"""SSM Parameter Store, served by the gateway itself: the one AWS service besides DynamoDB, Lambda
`Invoke` and `@connections` that Parley's functions call (the authorizer reads its JWT secret).

Why not moto, which served it until 2026-11-29: moto's SSM backend imports about 190 MiB of
Python (every region's default parameters and more) and took 1.2 s of the ready line on its first
call; a dictionary behind the AWS JSON 1.1 protocol is all a function can observe here. Workers
reach it through `AWS_ENDPOINT_URL_SSM`, so their unchanged boto3 and Powertools code runs.

What it answers is AWS's (API reference, 2014-11-06): `GetParameter`, `GetParameters`,
`PutParameter` and `DeleteParameter`, their response shapes, and the errors a caller can act on
(`ParameterNotFound`, `ParameterAlreadyExists`, `ParameterVersionNotFound`, `ValidationException`).
Any other operation gets one error naming the four it serves. `WithDecryption` and `Overwrite` must
be JSON booleans (absent = false), else `SerializationException`, as AWS's deserializer answers.
The "aws"/"ssm" reserved prefix is refused only on create (AWS's public `/aws/service/...`
parameters are readable); reading such a name here is `ParameterNotFound`. parley dev has no
labels (`LabelParameterVersion` is not served), so a `name:label` selector is refused with
`ParameterNotFound`: the AWS documentation we found does not name the code for an unknown label
(GetParameter documents only `ParameterNotFound` and `ParameterVersionNotFound`), so this is our
choice, not a verified copy. SSM is answered only to callers on this machine (the gateway's
`this_machine_only` middleware). Signatures and IAM are not checked (`sam validate --lint` and
the template's policies cover IAM); SecureString values are kept in the clear, and read without
`WithDecryption` they come back as an opaque token, as AWS's do. Values are never logged.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web

from .account import ACCOUNT_ID, REGION
from .other_services import aws_json

TARGET_PREFIX = "AmazonSSM."
TYPES = ("String", "StringList", "SecureString")
MAX_NAME_CHARS = 2048  # a full name, path included
MAX_STANDARD_VALUE_BYTES = 4096  # the Standard tier; parley dev has no Advanced tier
MAX_NAMES_PER_GET = 10
_NAME = re.compile(r"/?[A-Za-z0-9_.\-/]+")  # used with fullmatch: a trailing newline is not a name
_SELECTOR = re.compile(r"(?P<name>[^:]+)(?::(?:(?P<version>\d+)|(?P<label>[^:]+)))?")


class SsmError(Exception):
    """An error SSM answers with: `code` becomes botocore's `Error.Code`."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Parameter:
    name: str
    type: str
    value: str
    version: int = 1
    modified: float = field(default_factory=time.time)
    description: str = ""

    def arn(self) -> str:
        return f"arn:aws:ssm:{REGION}:{ACCOUNT_ID}:parameter/{self.name.lstrip('/')}"

    def to_wire(self, decrypt: bool) -> dict[str, Any]:
        value = self.value
        if self.type == "SecureString" and not decrypt:  # AWS returns the ciphertext blob, never the value
            value = base64.b64encode(f"parley-dev-kms:{self.name}:{self.version}".encode()).decode()
        return {"Name": self.name, "Type": self.type, "Value": value, "Version": self.version,
                "LastModifiedDate": self.modified, "ARN": self.arn(), "DataType": "text"}


class ParameterStore:
    """The parameters of the local account, for the gateway's lifetime (in memory)."""

    def __init__(self) -> None:
        self._parameters: dict[str, Parameter] = {}
        self._operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "GetParameter": self._get_parameter,
            "GetParameters": self._get_parameters,
            "PutParameter": self._put_parameter,
            "DeleteParameter": self._delete_parameter,
        }

    # -- the domain ---------------------------------------------------------------

    def put(self, name: str, value: str, type_: str | None = None, overwrite: bool = False, description: str = "") -> int:
        """Create or (with `overwrite`) replace a parameter; returns its new version."""
        name = _creatable_name(name)
        if not isinstance(value, str) or not value:
            raise SsmError("ValidationException", "Value must be a non-empty string.")
        if len(value.encode()) > MAX_STANDARD_VALUE_BYTES:
            raise SsmError("ValidationException",
                           f"Standard tier parameters support a maximum value of {MAX_STANDARD_VALUE_BYTES} bytes.")
        old = self._parameters.get(name)
        if old is not None and not overwrite:
            raise SsmError("ParameterAlreadyExists", "The parameter already exists. To overwrite this value, set the "
                                                     "overwrite option in the request to true.")
        if type_ is None and old is None:
            raise SsmError("ValidationException", "A parameter type is required when you create a parameter.")
        type_ = type_ or old.type  # type: ignore[union-attr]
        if type_ not in TYPES:
            raise SsmError("ValidationException", f"1 validation error detected: Value '{type_}' at 'type' failed to satisfy "
                                                  f"constraint: Member must satisfy enum value set: {list(TYPES)}")
        version = old.version + 1 if old else 1
        self._parameters[name] = Parameter(name, type_, value, version, description=description)
        return version

    def get(self, selector: str) -> Parameter:
        """The parameter a `Name` names: a name, its ARN, or either with `:version`."""
        match = _SELECTOR.fullmatch(_strip_arn(selector)) if isinstance(selector, str) else None
        if match is None:
            raise SsmError("ValidationException", "Parameter name: a name, optionally followed by :version, is required.")
        parameter = self._parameters.get(_valid_name(match["name"]))
        if parameter is None:
            raise SsmError("ParameterNotFound", f"Parameter {match['name']} not found.")
        if match["label"] is not None:
            raise SsmError("ParameterNotFound", f"Parameter {match['name']} has no label {match['label']!r}: parley dev "
                                                f"keeps no labels; select the latest version by name alone.")
        if match["version"] is not None and int(match["version"]) != parameter.version:
            raise SsmError("ParameterVersionNotFound",
                           f"Version {match['version']} of parameter {parameter.name} not found: parley dev keeps "
                           f"only the latest version ({parameter.version}).")
        return parameter

    def delete(self, name: str) -> None:
        if self._parameters.pop(_valid_name(_strip_arn(name)), None) is None:
            raise SsmError("ParameterNotFound", f"Parameter {name} not found.")

    # -- the wire -----------------------------------------------------------------

    def add_routes(self, app: web.Application, not_ssm: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
        """`POST /` with an `AmazonSSM.*` target; any other `POST /` is answered by `not_ssm`."""

        async def route(request: web.Request) -> web.StreamResponse:
            if not request.headers.get("X-Amz-Target", "").startswith(TARGET_PREFIX):
                return await not_ssm(request)
            return await self.handle(request)

        app.router.add_post("/", route)

    async def handle(self, request: web.Request) -> web.Response:
        """One AWS JSON 1.1 call, routed by its `X-Amz-Target`."""
        target = request.headers.get("X-Amz-Target", "")
        operation = self._operations.get(target[len(TARGET_PREFIX):])
        try:
            if operation is None:
                raise SsmError("UnknownOperationException",
                               f"parley dev's local SSM serves {', '.join(self._operations)}; "
                               f"{target[len(TARGET_PREFIX):]!r} is not one of them.")
            try:
                body = json.loads(await request.read() or b"{}")
            except ValueError:
                raise SsmError("SerializationException", "The request body is not JSON.") from None
            if not isinstance(body, dict):
                raise SsmError("SerializationException", "The request body must be a JSON object.")
            result = operation(body)
        except SsmError as error:
            return aws_json(400, {"__type": error.code, "message": error.message})
        return aws_json(200, result)

    def _get_parameter(self, body: dict[str, Any]) -> dict[str, Any]:
        decrypt = _flag(body, "WithDecryption")
        return {"Parameter": self.get(body.get("Name")).to_wire(decrypt)}  # type: ignore[arg-type]

    def _get_parameters(self, body: dict[str, Any]) -> dict[str, Any]:
        names = body.get("Names")
        if not isinstance(names, list) or not 1 <= len(names) <= MAX_NAMES_PER_GET:
            raise SsmError("ValidationException", f"Names must list 1 to {MAX_NAMES_PER_GET} parameter names.")
        decrypt = _flag(body, "WithDecryption")
        found, invalid = [], []
        for name in names:
            try:
                found.append(self.get(name).to_wire(decrypt))
            except SsmError as error:
                if error.code == "ValidationException":
                    raise
                invalid.append(name)
        return {"Parameters": found, "InvalidParameters": invalid}

    def _put_parameter(self, body: dict[str, Any]) -> dict[str, Any]:
        overwrite = _flag(body, "Overwrite")  # before anything is written
        version = self.put(body.get("Name"), body.get("Value"), body.get("Type"),  # type: ignore[arg-type]
                           overwrite=overwrite, description=str(body.get("Description", "")))
        return {"Version": version, "Tier": "Standard"}

    def _delete_parameter(self, body: dict[str, Any]) -> dict[str, Any]:
        self.delete(body.get("Name"))  # type: ignore[arg-type]
        return {}


def _strip_arn(name: str) -> str:
    prefix = f"arn:aws:ssm:{REGION}:{ACCOUNT_ID}:parameter"
    if isinstance(name, str) and name.startswith(prefix):
        rest = name[len(prefix):]
        return rest if rest.count("/") > 1 else rest.lstrip("/")  # parameter/a -> a, parameter/x/y -> /x/y
    return name


def _valid_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise SsmError("ValidationException", "Parameter name is required.")
    if len(name) > MAX_NAME_CHARS or not _NAME.fullmatch(name) or "//" in name:
        raise SsmError("ValidationException",
                       "Parameter name: may contain only letters, digits and _ . - / (a path starts with /), "
                       "at most 2048 characters.")
    return name


def _creatable_name(name: Any) -> str:
    """A valid name that a caller may also create: AWS reserves the "aws" and "ssm" prefixes for itself."""
    name = _valid_name(name)
    if name.lstrip("/").lower().startswith(("aws", "ssm")):
        raise SsmError("ValidationException", "Parameter name: can't be prefixed with \"aws\" or \"ssm\" (case-insensitive).")
    return name


def _flag(body: dict[str, Any], key: str) -> bool:
    """A boolean member: only a JSON boolean is one (AWS's deserializer refuses "false" and 0); absent is false."""
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise SsmError("SerializationException", f"{key} must be a JSON boolean (true or false), not {json.dumps(value)[:40]}.")
    return value
