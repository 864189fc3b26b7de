"""The API Gateway events Parley's functions receive: Powertools' WebSocket models plus the
authorizer's output, which API Gateway adds to every event of an authorized connection
(`$disconnect` alone has a model of its own that requires only what its clean-up needs)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketConnectEventRequestContext,
    APIGatewayWebSocketMessageEventModel,
    APIGatewayWebSocketMessageEventRequestContext,
)
from pydantic import BaseModel, Field, ValidationError, ValidatorFunctionWrapHandler, field_validator


class AuthorizerOutput(BaseModel):
    principal_id: str = Field(alias="principalId", min_length=1)
    name: str | None = None
    rooms: str | None = None  # the validated `rooms` claim, compactly (`parley.core.access.Grants.encode`)


class SourceIdentity(BaseModel):
    """`requestContext.identity` with `sourceIp` kept as the string API Gateway wrote. Powertools'
    model parses it into an `ipaddress` network: half the CPU of parsing an event, on every
    invocation of every route (~10 us; benchmarks/handler_cpu_bench.py), for a value no route reads."""

    source_ip: str = Field(alias="sourceIp")
    user_agent: str | None = Field(default=None, alias="userAgent")


class _Authorized(BaseModel):
    authorizer: AuthorizerOutput


class MessageRequestContext(APIGatewayWebSocketMessageEventRequestContext, _Authorized):
    identity: SourceIdentity


class ConnectRequestContext(APIGatewayWebSocketConnectEventRequestContext, _Authorized):
    identity: SourceIdentity


class DisconnectRequestContext(BaseModel):
    """Only what `$disconnect` clean-up needs is required: the connection id.

    API Gateway sends this event best effort, and Powertools' model requires fields (headers,
    identity, close code and reason, the authorizer's context) that an event may lack; a missing
    or malformed one must not skip the clean-up, which leaves rows behind until their TTL.
    """

    connection_id: str = Field(alias="connectionId", min_length=1)
    request_id: str | None = Field(default=None, alias="requestId")  # the log lines' correlation id
    domain_name: str | None = Field(default=None, alias="domainName")
    stage: str | None = None
    disconnect_status_code: int | None = Field(default=None, alias="disconnectStatusCode")
    disconnect_reason: str | None = Field(default=None, alias="disconnectReason")
    authorizer: AuthorizerOutput | None = None

    @field_validator("authorizer", mode="wrap")
    @classmethod
    def _unknown_when_malformed(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> AuthorizerOutput | None:
        try:
            return handler(value)
        except ValidationError:
            return None


class MessageEvent(APIGatewayWebSocketMessageEventModel):
    request_context: MessageRequestContext = Field(alias="requestContext")


class ConnectEvent(APIGatewayWebSocketConnectEventModel):
    request_context: ConnectRequestContext = Field(alias="requestContext")


class DisconnectEvent(BaseModel):
    request_context: DisconnectRequestContext = Field(alias="requestContext")
