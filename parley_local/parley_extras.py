"""Parley's additions to the generic gateway, as one `GatewayExtras`: the client files, `/ws-test`,
`/dev/token`, the dev secret in SSM, the Origin allow-list for local pages, and the banner hints.

`/dev/token` mints a token for any user it is asked for, so it answers this machine only unless the
developer passes `--dev-tokens-for-other-machines`: `--host 0.0.0.0` alone opens the WebSocket
endpoint and the pages to the network, not a way to become anyone. Another machine is refused
with a message that says how to get a token instead.

Why one object: the gateway runs any SAM WebSocket template; only this module knows Parley's
conventions (the `JwtSecretParameterName` and `AllowedOrigins` template parameters, the
`client/` folder, dev tokens), so nothing Parley-specific leaks into the emulator's AWS behaviour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Awaitable, Callable, Collection, Sequence

from aiohttp import web

from .gateway.addresses import ANY_INTERFACE, host_in_url, is_loopback
from .gateway.server import Gateway
from .gateway.this_machine_only import is_from_this_machine
from .local_aws.parameter_store import SsmError
from .tokens import DEFAULT_TTL_S, dev_secret, make_token

SECRET_PARAMETER = "JwtSecretParameterName"
ORIGINS_PARAMETER = "AllowedOrigins"
CLIENT_FILES = {
    "/parley-client.js": ("parley-client.js", "application/javascript"),
    "/parley-client.d.ts": ("parley-client.d.ts", "text/plain"),
    "/ws-test": ("ws-test.html", "text/html"),
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# parley-client.js imports its modules from ./lib/: every client/lib/*.js is served at /lib/<name>.js.
CLIENT_MODULES_DIR = "lib"


LOCAL_PAGE_HOSTS = ("127.0.0.1", "localhost")
TOKENS_FOR_OTHER_MACHINES = "--dev-tokens-for-other-machines"
TOKENS_THIS_MACHINE_ONLY = (f"parley dev gives dev tokens to this machine only. Run `parley token USER` on the machine "
                            f"that runs parley dev and paste the token, or restart parley dev with {TOKENS_FOR_OTHER_MACHINES} "
                            "to let anyone who can reach its port get a token for any user.")
_TOKEN_HEADERS = {"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"}


def local_origins(declared: Collection[str], overrides: dict[str, str], host: str, extra: Sequence[str] = ()) -> str | None:
    """The Origin allow-list for local work, or None when the template has no `AllowedOrigins`.

    Built in: pages on any port of this machine (the gateway's own /ws-test, a Vite or webpack
    dev server, ...): `http://localhost:*` means any port of that host, a form the authorizer
    understands. `--parameter-overrides AllowedOrigins=...` replaces the built-ins; `extra`
    (`--allow-origins`, `make dev ORIGINS=...`) is added to either. Deployed stacks keep the
    template's list.
    """
    if ORIGINS_PARAMETER not in declared:
        return None
    if ORIGINS_PARAMETER in overrides:
        origins = [o.strip().rstrip("/") for o in overrides[ORIGINS_PARAMETER].split(",") if o.strip()]
        if not origins or "*" in origins:  # any origin already
            return overrides[ORIGINS_PARAMETER]
    else:
        hosts = list(LOCAL_PAGE_HOSTS) + ([host] if host not in (*LOCAL_PAGE_HOSTS, *ANY_INTERFACE) else [])
        origins = [f"http://{host_in_url(h)}:*" for h in hosts]
    origins += [o.strip().rstrip("/") for o in extra if o.strip() and o.strip().rstrip("/") not in origins]
    return ",".join(origins)


def _authorizer_claims(gateway: Gateway) -> tuple[str | None, str | None]:
    """`iss`/`aud` the template's authorizer expects (JWT_ISSUER / JWT_AUDIENCE), so dev tokens pass it."""
    route = gateway.api.routes.get("$connect")
    if route is None or route.authorizer is None:
        return None, None
    fn = gateway.stack.functions.get(route.authorizer.function)
    env = fn.environment if fn else {}
    return env.get("JWT_ISSUER") or None, env.get("JWT_AUDIENCE") or None


class ParleyExtras:
    """What `parley dev` serves and does beyond API Gateway (a `gateway.server.GatewayExtras`)."""

    def __init__(self, client_dir: Path, tokens_for_other_machines: bool = False, allow_origins: Sequence[str] = ()):
        self.client_dir = client_dir
        self.tokens_for_other_machines = tokens_for_other_machines  # `--dev-tokens-for-other-machines`
        self.allow_origins = tuple(allow_origins)  # `--allow-origins`

    def template_overrides(self, declared: Collection[str], given: dict[str, str], host: str) -> dict[str, str]:
        """`given` plus the page origins for local work when the template declares `AllowedOrigins`
        (`local_origins`): otherwise its deployed default would refuse the pages on this machine."""
        origins = local_origins(declared, given, host, self.allow_origins)
        return given if origins is None else {**given, ORIGINS_PARAMETER: origins}

    def before_serving(self, gateway: Gateway) -> None:
        """Write the dev secret into the local SSM under the template's `JwtSecretParameterName`, if it has one."""
        name = gateway.stack.parameters.get(SECRET_PARAMETER)
        if name:
            gateway.parameter_store.put(str(name), dev_secret(), "SecureString", overwrite=True)

    def after_redeploy(self, gateway: Gateway) -> list[str]:
        """A template that comes to name a `JwtSecretParameterName` with no parameter yet gets the dev secret
        there, as a start would; a parameter that is there already (one the developer put, or the start's)
        is left as it is."""
        name = gateway.stack.parameters.get(SECRET_PARAMETER)
        if not name:
            return []
        try:
            gateway.parameter_store.put(str(name), dev_secret(), "SecureString", overwrite=False)
        except SsmError as exc:
            if exc.code == "ParameterAlreadyExists":
                return []
            raise
        return [f"JWT secret: SSM {name} <- $PARLEY_JWT_SECRET (dev default if unset), as {SECRET_PARAMETER} now names it"]

    def add_routes(self, app: web.Application, gateway: Gateway) -> None:
        for route, (filename, ctype) in CLIENT_FILES.items():
            app.router.add_get(route, self._client_file(filename, ctype))
        for module in sorted((self.client_dir / CLIENT_MODULES_DIR).glob("*.js")):
            name = f"{CLIENT_MODULES_DIR}/{module.name}"
            app.router.add_get(f"/{name}", self._client_file(name, "application/javascript"))

        async def dev_token(request: web.Request) -> web.Response:
            return self._dev_token(request, gateway)

        app.router.add_get("/dev/token", dev_token)

    def _client_file(self, filename: str, content_type: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            path = self.client_dir / filename
            if not path.is_file():
                return web.json_response({"message": f"{filename} not found in {self.client_dir}"}, status=404)
            return web.Response(body=path.read_bytes(), content_type=content_type, charset="utf-8",
                                headers={"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"})

        return handler

    def _dev_token(self, request: web.Request, gateway: Gateway) -> web.Response:
        if not (self.tokens_for_other_machines or is_from_this_machine(request)):
            return web.json_response({"message": TOKENS_THIS_MACHINE_ONLY}, status=403, headers=_TOKEN_HEADERS)
        user = request.query.get("user", "")
        if not 1 <= len(user) <= 128:
            return web.json_response({"message": "query parameter user (1..128 chars) is required"}, status=400)
        try:
            ttl = int(request.query.get("ttl", DEFAULT_TTL_S))
        except ValueError:
            return web.json_response({"message": "ttl must be an integer"}, status=400)
        issuer, audience = _authorizer_claims(gateway)
        try:
            token = make_token(user, request.query.get("name") or None, ttl, issuer=issuer, audience=audience,
                               rooms=request.query.get("rooms"))
        except ValueError as error:
            return web.json_response({"message": str(error)}, status=400)
        return web.json_response({"token": token}, headers=_TOKEN_HEADERS)

    def banner(self, gateway: Gateway) -> list[str]:
        lines = [_history_line(gateway)] if gateway.aws is not None else []
        origins = gateway.stack.parameters.get(ORIGINS_PARAMETER)
        if origins is not None:
            lines.append(f"  Page origins:  {origins or '(any)'}  (more: `make dev ORIGINS=http://host:port`)")
        if SECRET_PARAMETER in gateway.stack.parameters:
            lines.append(f"  JWT secret:    SSM {gateway.stack.parameters[SECRET_PARAMETER]} <- $PARLEY_JWT_SECRET (dev default if unset)")
        lines.append("Get a token:   parley token alice            (or GET " + gateway.http_url + "/dev/token?user=alice&name=Alice)")
        if self.tokens_for_other_machines or not is_loopback(gateway.config.host):
            lines.append(self._token_mode_line(gateway))
        lines += [
            f"Connect:       python -m websockets '{gateway.ws_url}?token=<token>'",
            f"Browser:       {gateway.http_url}/ws-test",
        ]
        return lines

    def _token_mode_line(self, gateway: Gateway) -> str:
        """Who /dev/token answers, when other machines can reach the port or the developer asked for them."""
        host = gateway.config.host or "(all)"
        if is_loopback(host):
            return f"  Dev tokens:    this machine only: only this machine reaches --host {host}, so {TOKENS_FOR_OTHER_MACHINES} changes nothing"
        if self.tokens_for_other_machines:
            return (f"  !!! {TOKENS_FOR_OTHER_MACHINES}: /dev/token mints a token for any user to anyone who can reach "
                    f"port {gateway.port} (--host {host}); drop the flag unless pages on other machines need it")
        return (f"  Dev tokens:    this machine only (--host {host} opens the WebSocket and the pages, not /dev/token): "
                f"other machines use `parley token USER` from here, or restart with {TOKENS_FOR_OTHER_MACHINES}")


def _history_line(gateway: Gateway) -> str:
    """Whether rooms and history outlive this run, and how to get the other behaviour."""
    assert gateway.aws is not None
    ddb = gateway.aws.dynamodb_local
    if ddb is not None and ddb.data_dir is not None:
        return f"  History:       kept in {ddb.data_dir} across restarts (`make dev FRESH=1` starts empty and leaves it as it is)"
    if ddb is not None or gateway.config.dynamodb_endpoint is None:
        return "  History:       in memory: gone when parley dev stops (`make dev` keeps it in .parley/dynamodb)"
    return f"  History:       in the DynamoDB at {gateway.config.dynamodb_endpoint}"
