"""DynamoDB's item calls sent with one signature and one HTTP send, instead of botocore's whole per-call pipeline.

Why: most of a botocore call's CPU is not the HTTP exchange but what surrounds it: the event hooks
fired around it, the endpoint ruleset resolved again for every call, the request objects built,
copied and prepared, and `SigV4Auth`, which rebuilds the canonical request through those objects.
A `$disconnect` in no room (one Query) took 1,006 µs of CPU through botocore and 705 µs directly
(`benchmarks/handler_cpu_bench.py --baseline`); a `$disconnect` from a room makes five calls and a
chat message three, each at the function's CPU share (256 MB: 0.145 of a vCPU), where that overhead
is billed as milliseconds per call.

What stays botocore's, so the calls behave as before:
- the credentials it resolved (refreshed as it refreshes them), and the URL and signing region its
  endpoint ruleset resolves for the client's item calls (`_item_endpoint`; once, not per call);
- its HTTP session: the connection pool, proxies, TLS verification, timeouts, and the mapping of
  connection errors and timeouts to its exceptions;
- its reader of the answer (`dynamodb_responses`), with the modeled fields of an error;
- its retry handler, asked after every attempt (`needs-retry`) as botocore's endpoint asks it: which
  answers are worth another attempt (throttling, 5xx, a CRC32 mismatch, a dropped connection), how long
  to wait, within the client's attempts and retry quota, which the `after-call` event refills;
- its exceptions: the modeled class for the error code, which PynamoDB and `dynamodb_store` catch.

What is skipped: parameter validation (PynamoDB's clients switch it off anyway), the endpoint ruleset
per call (resolved once), and the events other than `before-send`, `needs-retry` and
`after-call` (`SKIPPED_EVENTS`). So a client keeps botocore's whole pipeline where anything else hooks
into those (`_foreign_hooks`): the X-Ray SDK, which records calls by wrapping botocore's client when
tracing is on, or a test's recorder.
Operations other than `DIRECT_OPERATIONS`, parameters that JSON cannot carry as they are (bytes,
which botocore sends as base64) and a None member (sent as null either way), also go through botocore.
tests/dynamodb_local/test_dynamodb_requests.py holds both paths to the same answers, errors, attempts
and waits, against DynamoDB Local and a front that fails on request.
"""

from __future__ import annotations

import json
import os
import time
import weakref
from types import FunctionType
from typing import Any, Callable
from urllib.parse import quote, urlsplit

import botocore
from botocore.awsrequest import AWSPreparedRequest, HeadersDict

from .signed_http import SigV4Signer

# The calls `dynamodb_store` makes through its models.
DIRECT_OPERATIONS = frozenset({"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "BatchWriteItem"})
# The events botocore fires for a call that the direct path does not fire (it fires `before-send`,
# `needs-retry` and `after-call`): a handler of these from outside botocore and PynamoDB keeps the
# client on botocore's path. `choose-signer` and `before-sign` are its signer's; `after-call-error`
# replaces `after-call` when a call ends in an exception (test_dynamodb_requests holds this list to
# the events botocore fires).
SKIPPED_EVENTS = ("provide-client-params", "before-parameter-build", "before-endpoint-resolution", "before-call",
                  "request-created", "choose-signer", "before-sign", "response-received", "before-parse",
                  "after-call-error")
# Hooks on those events that direct calls may skip: botocore's and PynamoDB's own (the direct path does
# their work: signing, retry headers, user agent), and Powertools', which only adds its name to the
# User-Agent header (for AWS's count of Powertools' use) and which every function imports.
KNOWN_HOOKS = ("botocore.", "pynamodb.", "aws_lambda_powertools.shared.user_agent")
USER_AGENT = f"parley Botocore/{botocore.__version__}"
# botocore's recursion-detection header, in Lambda: the function's trace id, escaped as it escapes it.
_TRACE_ID_SAFE = "-=;:+&[]{}\"',"


def _first_answer(responses: list[tuple[Any, Any]]) -> Any:
    """The first handler's answer that is not None, as botocore's `first_non_none_response` reads it."""
    for _, answer in responses:
        if answer is not None:
            return answer
    return None


class DirectItemCalls:
    """A DynamoDB client's `_make_api_call`, for `DIRECT_OPERATIONS`: the rest goes to botocore's own."""

    def __init__(self, client: Any, via_botocore: Callable[[str, dict[str, Any]], Any], *,
                 sleep: Callable[[float], None] = time.sleep, endpoint: tuple[str, str, str] | None = None) -> None:
        endpoint = endpoint or _item_endpoint(client)
        if endpoint is None:
            raise ValueError("botocore's ruleset gives this client's item calls more than a SigV4 URL: see _item_endpoint")
        meta = client.meta
        service = meta.service_model
        self._client = client
        self._via_botocore = via_botocore
        self._sleep = sleep
        self._events = meta.events
        self._endpoint = client._endpoint
        self._session = client._endpoint.http_session
        self._url, signing_name, signing_region = endpoint
        self._signer = SigV4Signer(client._request_signer._credentials, signing_name, signing_region)
        self._operations = {name: service.operation_model(name) for name in DIRECT_OPERATIONS}
        self._targets = {name: f"{service.metadata['targetPrefix']}.{name}" for name in DIRECT_OPERATIONS}
        self._content_type = f"application/x-amz-json-{service.metadata['jsonVersion']}"
        self._service_id = service.service_id.hyphenize()
        self._parser = client._endpoint._response_parser_factory.create_parser(service.resolved_protocol)

    def __call__(self, operation_name: str, api_params: dict[str, Any]) -> Any:
        operation = self._operations.get(operation_name)
        if operation is None or None in api_params.values():
            return self._via_botocore(operation_name, api_params)
        try:
            body = json.dumps(api_params, separators=(",", ":"), allow_nan=False).encode("utf-8")
        except (TypeError, ValueError):  # bytes (a blob), a datetime, NaN: botocore's serializer knows them
            return self._via_botocore(operation_name, api_params)
        headers = {"X-Amz-Target": self._targets[operation_name], "Content-Type": self._content_type,
                   "User-Agent": USER_AGENT}
        trace_id = os.environ.get("_X_AMZN_TRACE_ID")
        if trace_id and os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
            headers["X-Amzn-Trace-Id"] = quote(trace_id, safe=_TRACE_ID_SAFE)
        context: dict[str, Any] = {"client_config": self._client.meta.config}
        attempts = 1
        while True:
            http, parsed, caught = self._attempt(operation, body, headers)
            delay = _first_answer(self._events.emit(
                f"needs-retry.{self._service_id}.{operation_name}", response=None if http is None else (http, parsed),
                endpoint=self._endpoint, operation=operation, attempts=attempts, caught_exception=caught,
                request_dict={"context": context},
            ))
            if delay is None or delay is False:
                break
            self._sleep(delay)
            attempts += 1
        if caught is not None:
            raise caught
        if "ResponseMetadata" in parsed:
            parsed["ResponseMetadata"]["RetryAttempts"] = attempts - 1
        self._events.emit(f"after-call.{self._service_id}.{operation_name}", http_response=http, parsed=parsed,
                          model=operation, context=context)
        if http.status_code >= 300:
            code = parsed.get("Error", {}).get("Code")
            raise self._client.exceptions.from_code(code)(parsed, operation_name)
        return parsed

    def _attempt(self, operation: Any, body: bytes, headers: dict[str, str]) -> tuple[Any, Any, Exception | None]:
        """One signed send: (the HTTP answer, its parsed form, None), or (None, None, why there was no answer).

        `before-send` fires as botocore's endpoint fires it: a handler may add headers (PynamoDB's extra
        headers) or answer in the service's place (moto's stub, while a mock is on). The header values
        are bytes, as botocore's endpoint encodes them: what wraps its HTTP session reads them so (the
        X-Ray SDK's PynamoDB patch decodes X-Amz-Target, and failed every call on str)."""
        signed = HeadersDict({name: value.encode("utf-8")
                              for name, value in self._signer.headers("POST", self._url, body, headers).items()})
        request = AWSPreparedRequest("POST", self._url, signed, body, False)
        try:
            http = _first_answer(self._events.emit(f"before-send.{self._service_id}.{operation.name}", request=request))
            if http is None:
                http = self._session.send(request)
        except Exception as error:  # botocore's HTTP errors, and anything else its endpoint would catch
            return None, None, error
        answer = {"headers": http.headers, "status_code": http.status_code, "body": http.content,
                  "context": {"operation_name": operation.name}}
        parsed = self._parser.parse(answer, operation.output_shape)
        if http.status_code >= 300:
            code = parsed.get("Error", {}).get("Code")
            shape = operation.service_model.shape_for_error_code(code) if code else None
            if shape is not None:
                parsed.update(self._parser.parse(answer, shape))
        return http, parsed, None


def _item_endpoint(client: Any) -> tuple[str, str, str] | None:
    """(URL, signing name, signing region) of the client's item calls, as botocore's endpoint ruleset
    resolves them for every call. That is not always the client's `endpoint_url` and region: credentials
    that know their account (AWS_ACCOUNT_ID, SSO, assume-role) get the account's endpoint, and region
    "local" is DynamoDB Local signed for us-east-1 (which keeps a database per signed region without
    -sharedDb). None where botocore would do more than sign for a URL (headers, another auth scheme, a
    query) or refuse the call (an account id required but unknown): its pipeline keeps those clients.
    The URL's path is botocore's: its endpoint's, or "/" where it has none."""
    meta = client.meta
    operation = meta.service_model.operation_model("GetItem")
    context: dict[str, Any] = {"client_region": meta.region_name, "client_config": meta.config,
                               "auth_type": operation.resolved_auth_type}
    try:
        url, headers, _ = client._resolve_endpoint_ruleset(operation, {}, context)
    except Exception:  # botocore raises it again for every call, on its own path
        return None
    parts = urlsplit(url)
    if (headers or parts.query or parts.fragment or context.get("auth_type") not in (None, "v4")
            or client._request_signer.signature_version != "v4"):
        return None
    signing = context.get("signing", {})
    return (url if parts.path else f"{url}/", signing.get("signing_name", client._request_signer.signing_name),
            signing.get("region", meta.region_name))


def _foreign_hooks(client: Any) -> list[str]:
    """What, besides `KNOWN_HOOKS`, hooks into this client's calls where direct calls would skip it:
    a wrapper of botocore's `_make_api_call` (the X-Ray SDK, a test's recorder), an instance attribute of
    that name (a test's), or a handler of an event the direct path does not fire."""
    found = []
    method = getattr(type(client), "_make_api_call", None)
    if type(method) is not FunctionType or method.__module__ != "botocore.client":
        found.append(f"_make_api_call is {method!r}")
    if "_make_api_call" in client.__dict__:
        found.append("an instance attribute _make_api_call")
    service_id = client.meta.service_model.service_id.hyphenize()
    handlers = client.meta.events._emitter._handlers  # botocore has no public listing of an event's handlers
    for event in SKIPPED_EVENTS:
        for operation in sorted(DIRECT_OPERATIONS):
            for handler in handlers.prefix_search(f"{event}.{service_id}.{operation}"):
                if not getattr(handler, "__module__", "").startswith(KNOWN_HOOKS):
                    found.append(f"{event}: {handler!r}")
    return found


_decided: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def send_item_calls_directly(client: Any) -> Any:
    """Give a botocore DynamoDB client `DirectItemCalls` (once; idempotent), unless something hooks into its
    calls (`_foreign_hooks`), it has no credentials yet, or botocore's ruleset asks more of its calls than a
    signature for a URL (`_item_endpoint`): those clients keep botocore's whole pipeline. PynamoDB calls
    the client's `_make_api_call`; an attribute of the instance answers before the class's method."""
    if client in _decided:
        return client
    if client._request_signer._credentials is None:
        return client  # undecided: PynamoDB builds a new client when the credentials were missing
    endpoint = None if _foreign_hooks(client) else _item_endpoint(client)
    direct = endpoint is not None
    if direct:
        client._make_api_call = DirectItemCalls(client, client._make_api_call, endpoint=endpoint)
    _decided[client] = direct
    return client
