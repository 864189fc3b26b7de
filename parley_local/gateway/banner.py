"""The lines `parley dev` prints once it is ready: endpoints, tables, and the routes table.

Why apart from the server: it is presentation only, read by people (and by tests that check
the route table), and it changes for reasons the gateway's behaviour does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .template import RouteSpec, WebSocketApiSpec

if TYPE_CHECKING:
    from .server import Gateway


def routes_table(api: WebSocketApiSpec) -> list[str]:
    """One line per route: key -> function, with its authorizer and route response.

    A route whose integration `parley dev` does not run as AWS does says so here, with what happens
    locally instead: the only place a developer would otherwise learn it is a deploy."""
    width = max([len(k) for k in api.routes] + [9])
    lines = []
    order = sorted(api.routes, key=lambda k: (not k.startswith("$"), k))
    for key in order:
        route = api.routes[key]
        target = route.function or _not_run(route)
        if route.function and route.integration_type == "AWS":
            target += " (AWS integration, run as AWS_PROXY: the function gets the proxy event, not a mapping template's output)"
        extras = []
        if route.authorizer:
            extras.append(f"authorizer {route.authorizer.function}")
        if route.route_response:
            extras.append("route response")
        suffix = f"  [{', '.join(extras)}]" if extras else ""
        lines.append(f"  {key:<{width}}  ->  {target}{suffix}")
    return lines


def _not_run(route: RouteSpec) -> str:
    """What a route without a function to invoke does locally."""
    kind = route.integration_type
    what = {
        "NONE": "no integration",
        "MISSING": "its integration is not in this template",
        "AWS_PROXY": "AWS_PROXY integration with a function not in this template",
        "AWS": "AWS integration with a function not in this template",
    }.get(kind, f"{kind} integration")
    if route.key == "$connect":
        allowed = "once the authorizer allows them" if route.authorizer else "without a call"
        return f"({what}, not run locally: connections are accepted {allowed})"
    if route.key == "$disconnect":
        return f"({what}, not run locally: nothing runs on disconnect)"
    return f"({what}, not run locally: its frames get no answer)"


def banner(gateway: "Gateway") -> list[str]:
    """The gateway's own lines (extras add theirs after these)."""
    assert gateway.aws is not None
    api, stack = gateway.api, gateway.stack
    return [
        f"Local API Gateway for {stack.template_path.name} (API {api.name}, id {api.api_id})",
        f"  Template:      {stack.source}",
        f"  WebSocket:     {gateway.ws_url}",
        f"  @connections:  {gateway.connections_url}/@connections/{{connectionId}}  (also https:// on this port)",
        f"  DynamoDB:      {gateway.aws.dynamodb_endpoint} ({gateway.aws.describe_dynamodb()})",
        f"  Tables:        {', '.join(t.name for t in stack.tables) or '(none)'}",
        f"  Other AWS:     SSM on this port; any other service from moto, started on its first call ({_moto_state(gateway)})",
        f"  Route selection: {api.selection_expression}",
        "Routes:",
        *routes_table(api),
    ]


def _moto_state(gateway: "Gateway") -> str:
    assert gateway.aws is not None
    if gateway.aws.moto is None:
        return "not running"
    return f"running, pid {gateway.aws.pid}" if gateway.aws.pid else "running in-process"
