"""The local API Gateway WebSocket API: its lifecycle and its one aiohttp app.

Why one aiohttp app: API Gateway serves the WebSocket endpoint and the
`@connections` API on the same host; handlers find the latter through
`AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI=http://HOST:PORT/STAGE`, and an
application's own HTTP routes (a dev client, dev tokens) hang off the same port
through one `GatewayExtras` object. Everything here is generic to any SAM
WebSocket template; behaviour follows AWS_WEBSOCKET_REFERENCE.md wherever a
client or a handler could tell the difference. What happens on one connection
is `session.Session`; closing idle ones is `sweeper`; the ready banner is `banner`.

Redeploys as on AWS: when a function's code, the layer or the template changes on disk
(`code_watch`), the affected execution environments retire and the next invocation cold-starts
on the new code; open sockets stay open. A new template's routes and authorizer apply to new
connections (each session keeps the services it connected with); its DynamoDB stream mappings
replace the old ones as CloudFormation's would (`StreamEventPoller.redeploy`).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Protocol

from aiohttp import web

from ..local_aws.account import load_client_models
from ..local_aws.other_services import OtherAwsServices
from ..local_aws.parameter_store import ParameterStore
from ..local_aws.services import LocalAws
from ..parameter_overrides import redeploy_note
from . import banner as banner_lines
from .addresses import ANY_INTERFACE, host_in_url
from .code_watch import CodeWatcher, is_under
from .collector import SERVING_COLLECTOR
from .connection import OPEN, REASON_GOING_AWAY, Connection
from .connections_api import ConnectionsApi
from .console import Console
from .handshake import Handshake
from .front_door import front_door
from .handshake_limits import PARSER_LIMITS
from .integration import BackgroundTasks, Integration
from .lambda_invoke_api import LambdaInvokeApi
from .stream_events import StreamEventPoller
from .local_tls import LocalTls, TlsOrPlainSite
from .routing import RouteSelector
from .session import Session, SessionServices
from .sweeper import sweep
from .cfn import load_yaml
from .template import Stack, TemplateError, load_stack
from .this_machine_only import api_gateway_forbidden, open_to_the_network
from .worker_pool import LambdaRuntime


@dataclass
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 3001
    stage: str = "local"
    idle_timeout: float = 600.0
    max_connection_duration: float = 7200.0
    integration_timeout: float | None = None  # None: the route's (29 s at most)
    post_latency_ms: float = 0.0
    post_queue_limit: int = 1000
    max_concurrency: int = 32
    prewarm: bool = False  # True: one environment per function before serving (Lambda starts them on first use)
    worker_idle_timeout: float = 300.0  # an environment unused this long is stopped (0: never)
    reload: bool = True  # redeploy functions, the layer and the template when they change on disk
    reload_interval: float = 0.5  # seconds between two looks at the files
    dynamodb: str = "local"  # DynamoDB Local, or "moto"
    dynamodb_endpoint: str | None = None  # a DynamoDB the developer runs (neither is started)
    dynamodb_data: Path | None = None  # DynamoDB Local keeps its data here (None: in memory)
    close_timeout: float = 5.0
    moto_mode: str = "subprocess"  # the embedded moto server: its own process, or "thread" (in-process)
    stream_events: bool = True  # poll DynamoDB streams for the template's stream event sources


class GatewayExtras(Protocol):
    """An application's additions to the gateway, plugged in as one object (e.g. `ParleyExtras`)."""

    def add_routes(self, app: web.Application, gateway: "Gateway") -> None:
        """Extra HTTP routes on the gateway's port (added before the catch-all 403): pages and tokens for
        clients, served to other machines too, like the WebSocket endpoint (`this_machine_only`)."""

    def template_overrides(self, declared: Collection[str], given: dict[str, str], host: str) -> dict[str, str]:
        """The parameter overrides to load a template that declares the parameters `declared` with, from the
        developer's `given` ones, for a gateway on `host` (e.g. Parley's page origins for local work). Asked
        at start and again at every redeploy of the template, so one that comes to declare such a parameter
        gets it without a restart."""

    def before_serving(self, gateway: "Gateway") -> None:
        """Runs once local AWS is up and before the port accepts connections (e.g. seed a secret)."""

    def after_redeploy(self, gateway: "Gateway") -> list[str]:
        """Runs after a redeploy of the template has been applied (e.g. seed a secret a new parameter names,
        never overwriting one the developer set); returns lines for the console."""

    def banner(self, gateway: "Gateway") -> list[str]:
        """Lines printed after the gateway's own banner."""


class Gateway:
    """A running local WebSocket API for one SAM stack."""

    def __init__(self, stack: Stack, config: GatewayConfig | None = None, console: Console | None = None,
                 extras: GatewayExtras | None = None):
        self.config = config or GatewayConfig()
        self.console = console or Console()
        self.extras = extras
        self._given_overrides = dict(stack.overrides)  # the developer's; the extras' are worked out per template
        wanted = self._extras_overrides(stack.template_path)
        if wanted != stack.overrides:
            stack = load_stack(stack.template_path, stack.stack_name, wanted)
        self.stack = stack
        self.api = stack.api
        self.selector = RouteSelector(self.api.selection_expression, self.api.routes.keys())
        self.connections: dict[str, Connection] = {}
        self.aws: LocalAws | None = None
        self.parameter_store = ParameterStore()  # SSM, served on this port
        self._other_services: OtherAwsServices | None = None
        self.tls: LocalTls | None = None
        self.runtime: LambdaRuntime | None = None
        self.connections_api: ConnectionsApi | None = None
        self.lambda_api: LambdaInvokeApi | None = None
        self.stream_events: StreamEventPoller | None = None
        self._code_watcher: CodeWatcher | None = None
        self.port = self.config.port
        self.tasks = BackgroundTasks()
        self._session_tasks: set[asyncio.Task[Any]] = set()
        self._services: SessionServices | None = None
        self._integration: Integration | None = None
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._threads: list[asyncio.Future[Any]] = []  # start-up work run in threads
        self._stopping = False
        self.failure: str | None = None  # why the gateway cannot go on (set with `failed`)
        self.failed = asyncio.Event()
        self._watchers: set[asyncio.Task[None]] = set()
        self._collector_tuned = False  # start() told SERVING_COLLECTOR this gateway serves; stop() tells it once it does not

    # -- addresses ----------------------------------------------------------------

    @property
    def local_host(self) -> str:
        host = self.config.host
        return "127.0.0.1" if host in ANY_INTERFACE else host

    @property
    def url_host(self) -> str:
        """`local_host` as a URL writes it: an IPv6 address (`--host ::1`) in brackets."""
        return host_in_url(self.local_host)

    @property
    def http_url(self) -> str:
        return f"http://{self.url_host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.url_host}:{self.port}/{self.config.stage}"

    @property
    def connections_url(self) -> str:
        return f"{self.http_url}/{self.config.stage}"

    # -- lifecycle ----------------------------------------------------------------

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`asyncio.to_thread`, tracked: if start() is cancelled (Ctrl-C during start-up), the thread
        cannot be, so stop() waits for it before stopping what it uses or started."""
        fut = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        self._threads.append(fut)
        return await asyncio.shield(fut)

    async def start(self) -> None:
        """Start local AWS, create tables, bind the port, warm the functions, then accept connections.

        Cancellable at any point (Ctrl-C during start-up); stop() then releases whatever was started.
        """
        cfg = self.config
        # botocore's models load while DynamoDB Local's JVM starts (both are on the way to ready)
        clients_loaded = asyncio.ensure_future(self._in_thread(load_client_models, ("dynamodb", "dynamodbstreams")))
        self.aws = await self._in_thread(LocalAws.start, cfg.dynamodb, cfg.dynamodb_endpoint, cfg.dynamodb_data, cfg.moto_mode)
        await clients_loaded
        self._watch_services()
        # before the stream mappings start: a rebuilt table has a new stream, and they must read that one
        await self._in_thread(self.aws.create_tables, self.stack.tables, self.console.line)
        self._sock = socket.socket(socket.AF_INET6 if ":" in self.config.host else socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.config.host, self.config.port))
        self.port = self._sock.getsockname()[1]
        self.tls = LocalTls.create([self.local_host, self.config.host])
        endpoints = {
            **self.aws.env(), "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": self.connections_url,
            "AWS_ENDPOINT_URL_SSM": self.http_url,  # `parameter_store`
            "AWS_ENDPOINT_URL": self.http_url,  # any other service: `other_services` forwards it
            "AWS_CA_BUNDLE": str(self.tls.ca_bundle),  # `https://{domainName}/{stage}` reaches this port's TLS side
            "AWS_ENDPOINT_URL_LAMBDA": self.http_url,  # a function invoking another one reaches its local worker pool
        }
        self.connections_api = ConnectionsApi(
            self.config.stage, self.connections.get, self._delete_connection,
            self.config.post_latency_ms, self.config.post_queue_limit,
        )
        self.runtime = LambdaRuntime(self.stack.functions, endpoints, self.console, self.config.max_concurrency,
                                     on_post=self.connections_api.post, idle_timeout_s=self.config.worker_idle_timeout)
        self.runtime.start_reaper()
        self.lambda_api = LambdaInvokeApi(self.runtime, self.tasks, self.console)
        self._integration = Integration(self.runtime, self.tasks, self.config.integration_timeout)
        self._services = self._session_services()
        if self.extras is not None:
            self.extras.before_serving(self)
        if self.config.prewarm:
            await self.runtime.prewarm(sorted(self._used_functions()))
        if self.config.stream_events:  # also with none yet: a redeploy may add one
            self.stream_events = StreamEventPoller(self.stack.stream_sources, _table_names(self.stack),
                                                   self.aws.dynamodb_endpoint, self.runtime, self.console)
            await self.stream_events.start()  # at LATEST before the port serves: no change is missed
        if self.config.reload:
            self._code_watcher = CodeWatcher(self._watched_paths(), self._on_files_changed, self.config.reload_interval,
                                             report=self.console.line)
            await self._code_watcher.start()
        self._runner = web.AppRunner(
            self._build_app(), access_log=None, handle_signals=False, shutdown_timeout=1.0, **PARSER_LIMITS,
        )
        await self._runner.setup()
        await TlsOrPlainSite(self._runner, self._sock, self.tls.server_context()).start()
        self._sweeper = asyncio.create_task(
            sweep(self.connections, self.config.idle_timeout, self.config.max_connection_duration, self.tasks.spawn)
        )
        # Start-up's objects out of the collector's walks, young collections rarer: counted across the
        # process's gateways (a test process serves several at once), given back when the last stops.
        SERVING_COLLECTOR.gateway_started()
        self._collector_tuned = True

    def _watch_services(self) -> None:
        """DynamoDB Local is never restarted silently: if it exits while serving, say so and fail."""
        ddb = self.aws.dynamodb_local if self.aws else None
        if ddb is None:
            return

        async def watch() -> None:
            code = await asyncio.to_thread(ddb.wait)
            if self._stopping:
                return
            self.failure = (f"DynamoDB Local (java pid {ddb.pid}) exited with status {code} while parley dev was running; "
                            "its in-memory data is gone. Start parley dev again (or use --dynamodb moto).")
            self.console.line(self.failure)
            self.failed.set()

        task = asyncio.create_task(watch())
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    def _session_services(self) -> SessionServices:
        assert self._integration is not None
        return SessionServices(
            api=self.api, stage=self.config.stage, selector=self.selector, connections=self.connections,
            handshake=Handshake(self.api, self._integration, self.console), integration=self._integration, tasks=self.tasks,
            console=self.console, close_timeout=self.config.close_timeout, stopping=lambda: self._stopping,
        )

    # -- redeploys ----------------------------------------------------------------

    def _watched_paths(self) -> list[Path]:
        roots = {self.stack.template_path}
        for spec in self.stack.functions.values():
            roots.add(spec.code_dir)
            roots.update(spec.layer_dirs)
        return sorted(p for p in roots if p.exists())

    async def _on_files_changed(self, paths: set[Path]) -> None:
        """A deploy of what changed: the template (routes, authorizer, functions), or functions' code and layers.

        One change is one deploy and one line, as one `sam deploy` is: a `git checkout` that edits both
        the template and code is reported in the template's line, each function retired once."""
        if self._stopping or self.runtime is None:
            return
        code = paths - {self.stack.template_path}
        if self.stack.template_path in paths:
            await self._redeploy_template(code)
        elif code:
            retired = self._retire_for(code)
            if retired:
                self.console.line(f"Reloaded {', '.join(retired)} ({_changed_files(code)} changed): open connections stay; "
                                  "the next invocation cold-starts on the new code")

    def _retire_for(self, paths: set[Path], already: Collection[str] = ()) -> list[str]:
        """Retire the functions whose code or layers hold `paths` (but those in `already`); their names."""
        assert self.runtime is not None
        hit = {
            lid for lid, spec in self.stack.functions.items()
            if lid not in already and any(is_under(p, (spec.code_dir, *spec.layer_dirs)) for p in paths)
        }
        return self.runtime.retire(hit)

    def _extras_overrides(self, template: Path) -> dict[str, str]:
        """The developer's overrides plus the extras' for `template` (whose parameters are read from its
        YAML, so the template is expanded once, with the overrides it is served with)."""
        if self.extras is None:
            return self._given_overrides
        declared = list(load_yaml(template).get("Parameters") or {})
        return self.extras.template_overrides(declared, self._given_overrides, self.config.host)

    def _load_template(self) -> Stack:
        path = self.stack.template_path
        return load_stack(path, self.stack.stack_name, self._extras_overrides(path))

    async def _redeploy_template(self, code: set[Path]) -> None:
        """Apply the template as it is now; `code` are the other files changed with it (see `_on_files_changed`)."""
        assert self.runtime is not None and self.aws is not None
        try:
            stack = await asyncio.to_thread(self._load_template)
            api = stack.api
            if stack.tables:
                # no rebuild while functions write: the writes made during the copy would be lost
                await asyncio.to_thread(self.aws.create_tables, stack.tables, self.console.line, False)
        except Exception as exc:  # noqa: BLE001 - YAML, CloudFormation or table errors alike: keep serving
            reason = str(exc) if isinstance(exc, TemplateError) else f"{type(exc).__name__}: {exc}"
            reloaded = self._retire_for(code)  # the code saved with it is deployed all the same
            self.console.line(f"Template changed but not applied ({reason}); still serving the previous template"
                              + self._code_note(reloaded, code))
            return
        if self.stream_events is not None:  # before the functions: a removed mapping invokes nothing more
            await self.stream_events.redeploy(stack.stream_sources, _table_names(stack))
        added, changed, removed = await self.runtime.replace_functions(stack.functions)
        overrides_now = redeploy_note(self.stack.undeclared_overrides, stack.undeclared_overrides, list(stack.parameters),
                                      stack.template_path.name)
        routing = [] if api.routes == self.api.routes else ["routes"]
        if api.selection_expression != self.api.selection_expression:
            routing.append("the route selection expression")
        auth = lambda a: a.routes.get("$connect") and a.routes["$connect"].authorizer  # noqa: E731
        if auth(api) != auth(self.api):
            routing.append("the authorizer")
        self.stack, self.api = stack, api
        self.selector = RouteSelector(api.selection_expression, api.routes.keys())
        self._services = self._session_services()
        if self._code_watcher is not None:
            await self._code_watcher.watch(self._watched_paths())
        reloaded = self._retire_for(code, already={*added, *changed})  # on the new template's functions
        parts = [f"{what} {', '.join(ids)}" for what, ids in (("new", added), ("changed", changed), ("removed", removed)) if ids]
        self.console.line(
            "Template reloaded: " + ("; ".join(parts) or ("no function changed" if not reloaded else "no function's definition changed"))
            + (f"; {' and '.join(routing)} changed: applies to new connections, open ones keep theirs" if routing else "")
            + self._code_note(reloaded, code)
            + overrides_now
        )
        if self.extras is not None:
            try:
                lines = self.extras.after_redeploy(self)
            except Exception as exc:  # noqa: BLE001 - the redeploy stands; say what the extras could not do
                lines = [f"After the redeploy: {type(exc).__name__}: {exc}"]
            for line in lines:
                self.console.line(line)

    @staticmethod
    def _code_note(reloaded: list[str], code: set[Path]) -> str:
        if not reloaded:
            return ""
        return f"; code reloaded for {', '.join(reloaded)} ({_changed_files(code)} changed): the next invocation cold-starts on it"

    def _used_functions(self) -> set[str]:
        used: set[str] = set()
        for route in self.api.routes.values():
            if route.function:
                used.add(route.function)
            if route.authorizer:
                used.add(route.authorizer.function)
        return used

    def _build_app(self) -> web.Application:
        assert self.aws is not None
        self._other_services = OtherAwsServices(self.aws, self.console.line)
        app = web.Application(client_max_size=8 * 1024 * 1024, middlewares=[front_door(self._other_services)])
        if self.extras is not None:
            with open_to_the_network(app):
                self.extras.add_routes(app, self)
        assert self.connections_api is not None
        self.connections_api.add_routes(app)
        assert self.lambda_api is not None
        self.lambda_api.add_routes(app)
        self.parameter_store.add_routes(app, self._not_found)
        with open_to_the_network(app):  # every other route answers this machine only
            app.router.add_get(f"/{self.config.stage}", self._ws_handler)  # found by aiohttp's path index, no pattern tried
            app.router.add_get("/{stage}", self._ws_handler)
            app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def stop(self) -> None:
        """Close every socket with 1001 "Going away", run their `$disconnect`, stop functions and services."""
        if self._stopping:
            return
        self._stopping = True
        if self._sweeper:
            self._sweeper.cancel()
        if self._code_watcher is not None:
            self._code_watcher.stop()
        if self.runtime:  # from now on only what the `$disconnect`s need may start an environment
            self.runtime.stop_starting(self._only_for_clients())
        await asyncio.gather(
            *(c.close(1001, REASON_GOING_AWAY) for c in list(self.connections.values()) if c.state == OPEN),
            return_exceptions=True,
        )
        await self._wait_for_sessions()
        if self.stream_events is not None:  # after $disconnect, whose leaves it may still deliver
            await self.stream_events.stop()
        await self.tasks.wait(timeout=2)
        if self._runner:
            await self._runner.cleanup()
        elif self._sock is not None:  # start() was interrupted before serving
            self._sock.close()
        if self._other_services is not None:  # after the runner: a forwarded call in flight would make a new session
            await self._other_services.close()
        if self.runtime:
            await self.runtime.close()
        if self._threads:  # start-up work that may still run in a thread (LocalAws.start, create_tables)
            done, _ = await asyncio.wait(self._threads, timeout=60)
            for fut in done:
                if not fut.cancelled() and fut.exception() is None and isinstance(fut.result(), LocalAws) and self.aws is None:
                    self.aws = fut.result()
        if self.aws:
            await asyncio.to_thread(self.aws.stop)
        if self.tls:
            self.tls.remove()
        if self._collector_tuned:
            self._collector_tuned = False
            SERVING_COLLECTOR.gateway_stopped()

    def _only_for_clients(self) -> set[str]:
        """The functions that only serve clients ($connect, the authorizer, message routes): a stopping
        gateway needs none of them. `$disconnect`'s function stays, and so does every function reached
        otherwise (stream consumers, a fan-out invoked by another function), which a `$disconnect` may need."""
        used = self._used_functions()
        route = self.api.routes.get("$disconnect")
        return used - ({route.function} if route is not None and route.function else set())

    async def _wait_for_sessions(self, report_every: float = 3.0, stall_limit: float = 35.0) -> None:
        """Wait for every session to finish (its close, then its `$disconnect`), however many there are,
        while they make progress; report every few seconds; give up only after `stall_limit` seconds
        without one finishing (more than the 29 s integration timeout)."""
        loop = asyncio.get_running_loop()
        last_progress = loop.time()
        pending = self._session_tasks
        while pending:
            before = len(pending)
            await asyncio.wait(list(pending), timeout=report_every)
            if not pending:
                return
            now = loop.time()
            if len(pending) < before:
                last_progress = now
            elif now - last_progress >= stall_limit:
                self.console.line(f"Giving up on {len(pending)} connection(s): no `$disconnect` finished for {stall_limit:.0f} s.")
                return
            self.console.line(f"  {len(pending)} connection(s) still closing or running $disconnect ... (Ctrl-C again to force)")

    # -- HTTP ---------------------------------------------------------------------

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        if request.match_info.get("stage", self.config.stage) != self.config.stage:
            return api_gateway_forbidden()
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.json_response({"message": "Upgrade Required"}, status=426)
        if self._stopping or self._services is None:
            return web.json_response({"message": "Service Unavailable"}, status=503)
        task = asyncio.current_task()
        if task is not None:
            self._session_tasks.add(task)
        try:
            return await Session(self._services, request, self.port).serve()
        finally:
            if task is not None:
                self._session_tasks.discard(task)

    def _delete_connection(self, conn: Connection) -> None:
        """DeleteConnection: close (1000) now; `$disconnect` follows with "Connection Closed Normally"."""
        conn.close_code, conn.close_reason = 1000, "Connection Closed Normally"
        self.tasks.spawn(conn.close(1000, conn.close_reason, frame_reason=""))

    async def _not_found(self, request: web.Request) -> web.Response:
        return api_gateway_forbidden()

    # -- presentation -------------------------------------------------------------

    def banner(self) -> list[str]:
        """The ready banner: the gateway's lines, then the extras'."""
        lines = banner_lines.banner(self)
        if self.extras is not None:
            lines += self.extras.banner(self)
        return lines


def _table_names(stack: Stack) -> dict[str, str]:
    return {t.logical_id: t.name for t in stack.tables}


def _changed_files(paths: set[Path]) -> str:
    shown = sorted(_shown(p) for p in paths)
    return ", ".join(shown[:3]) + (f" and {len(shown) - 3} more" if len(shown) > 3 else "")


def _shown(path: Path) -> str:
    """A changed file as the developer knows it: relative to the working directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
