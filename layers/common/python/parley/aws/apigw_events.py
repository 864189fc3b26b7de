"""The API Gateway events Parley's functions receive: Powertools' WebSocket models plus the
authorizer's output, which API Gateway adds to every event of an authorized connection."""

from __future__ import annotations

from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketConnectEventRequestContext,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketDisconnectEventRequestContext,
    APIGatewayWebSocketMessageEventModel,
    APIGatewayWebSocketMessageEventRequestContext,
)
from pydantic import BaseModel, Field


class AuthorizerOutput(BaseModel):
    principal_id: str = Field(alias="principalId", min_length=1)
    name: str | None = None


class _Authorized(BaseModel):
    authorizer: AuthorizerOutput


class MessageRequestContext(APIGatewayWebSocketMessageEventRequestContext, _Authorized):
    pass


class ConnectRequestContext(APIGatewayWebSocketConnectEventRequestContext, _Authorized):
    pass


class DisconnectRequestContext(APIGatewayWebSocketDisconnectEventRequestContext, _Authorized):
    pass


class MessageEvent(APIGatewayWebSocketMessageEventModel):
    request_context: MessageRequestContext = Field(alias="requestContext")


class ConnectEvent(APIGatewayWebSocketConnectEventModel):
    request_context: ConnectRequestContext = Field(alias="requestContext")


class DisconnectEvent(APIGatewayWebSocketDisconnectEventModel):
    request_context: DisconnectRequestContext = Field(alias="requestContext")
