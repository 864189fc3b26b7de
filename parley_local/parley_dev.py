"""The Parley-specific glue around the generic gateway: dev secret in SSM, client files, dev tokens.

Why separate: the gateway core runs any SAM WebSocket template; only this
module knows Parley's conventions (the `JwtSecretParameterName` template
parameter, the `client/` folder, `/dev/token`), so nothing Parley-specific
leaks into the emulator's AWS behaviour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from aiohttp import web

from .server import Gateway
from .template import Stack
from .tokens import DEFAULT_TTL_S, dev_secret, make_token

SECRET_PARAMETER = "JwtSecretParameterName"
ORIGINS_PARAMETER = "AllowedOrigins"
CLIENT_FILES = {
    "/parley-client.js": ("parley-client.js", "application/javascript"),
    "/parley-client.d.ts": ("parley-client.d.ts", "text/plain"),
    "/ws-test": ("ws-test.html", "text/html"),
}
# parley-client.js imports its modules from ./lib/: every client/lib/*.js is served at /lib/<name>.js.
CLIENT_MODULES_DIR = "lib"


def local_origins(stack: Stack, overrides: dict[str, str], host: str, port: int) -> str | None:
    """The Origin allow-list for the pages this gateway serves, unless the developer set `AllowedOrigins`."""
    if ORIGINS_PARAMETER not in stack.parameters or ORIGINS_PARAMETER in overrides or port == 0:
        return None
    hosts = ["127.0.0.1", "localhost"] + ([host] if host not in ("127.0.0.1", "localhost", "0.0.0.0", "::", "") else [])
    return ",".join(f"http://{h}:{port}" for h in hosts)


def seed_jwt_secret(gateway: Gateway) -> None:
    """Write the dev secret into the embedded SSM under the template's `JwtSecretParameterName`, if it has one."""
    name = gateway.stack.parameters.get(SECRET_PARAMETER)
    if not name or gateway.aws is None:
        return
    gateway.aws.client("ssm").put_parameter(Name=str(name), Value=dev_secret(), Type="SecureString", Overwrite=True)


def _authorizer_claims(gateway: Gateway) -> tuple[str | None, str | None]:
    """`iss`/`aud` the template's authorizer expects (JWT_ISSUER / JWT_AUDIENCE), so dev tokens pass it."""
    route = gateway.api.routes.get("$connect")
    if route is None or route.authorizer is None:
        return None, None
    fn = gateway.stack.functions.get(route.authorizer.function)
    env = fn.environment if fn else {}
    return env.get("JWT_ISSUER") or None, env.get("JWT_AUDIENCE") or None


def client_routes(gateway_ref: Callable[[], Gateway], client_dir: Path) -> Callable[[web.Application], None]:
    """The extra HTTP routes `parley dev` serves next to the WebSocket API."""

    def serve_file(filename: str, content_type: str) -> Callable[[web.Request], object]:
        async def handler(request: web.Request) -> web.StreamResponse:
            path = client_dir / filename
            if not path.is_file():
                return web.json_response({"message": f"{filename} not found in {client_dir}"}, status=404)
            return web.Response(body=path.read_bytes(), content_type=content_type, charset="utf-8",
                                headers={"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"})

        return handler

    async def dev_token(request: web.Request) -> web.Response:
        user = request.query.get("user", "")
        if not 1 <= len(user) <= 128:
            return web.json_response({"message": "query parameter user (1..128 chars) is required"}, status=400)
        try:
            ttl = int(request.query.get("ttl", DEFAULT_TTL_S))
        except ValueError:
            return web.json_response({"message": "ttl must be an integer"}, status=400)
        issuer, audience = _authorizer_claims(gateway_ref())
        token = make_token(user, request.query.get("name") or None, ttl, issuer=issuer, audience=audience)
        return web.json_response({"token": token}, headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"})

    def add(app: web.Application) -> None:
        for route, (filename, ctype) in CLIENT_FILES.items():
            app.router.add_get(route, serve_file(filename, ctype))  # type: ignore[arg-type]
        for module in sorted((client_dir / CLIENT_MODULES_DIR).glob("*.js")):
            name = f"{CLIENT_MODULES_DIR}/{module.name}"
            app.router.add_get(f"/{name}", serve_file(name, "application/javascript"))  # type: ignore[arg-type]
        app.router.add_get("/dev/token", dev_token)

    return add


def banner(gateway: Gateway) -> list[str]:
    lines = []
    if SECRET_PARAMETER in gateway.stack.parameters:
        lines.append(f"  JWT secret:    SSM {gateway.stack.parameters[SECRET_PARAMETER]} <- $PARLEY_JWT_SECRET (dev default if unset)")
    lines += [
        "Get a token:   parley token alice            (or GET " + gateway.http_url + "/dev/token?user=alice&name=Alice)",
        f"Connect:       python -m websockets '{gateway.ws_url}?token=<token>'",
        f"Browser:       {gateway.http_url}/ws-test",
    ]
    return lines
