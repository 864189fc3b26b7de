"""The `parley` command: `parley dev` (the local gateway), `parley token`, `parley test-connection`.

Why the CLI holds the glue: the gateway is generic; this is where Parley's
extras (`parley_extras.ParleyExtras`: client files, dev tokens, the dev
secret) and defaults are plugged into it.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .gateway.console import Console
from .gateway.event_loop import new_event_loop
from .gateway.cfn import load_yaml
from .gateway.template import TemplateError, load_stack
from .parameter_overrides import OverrideRefused, ignored_line, parse_overrides, undeclared
from .tokens import DEFAULT_TTL_S, make_token

if TYPE_CHECKING:
    from .parley_extras import ParleyExtras


def _warn_undeclared(overrides: dict[str, str], template: Path) -> None:
    """One line naming the overrides the template has no parameter for: `load_stack` ignores them as `sam deploy`
    does, and applies them on the redeploy that declares them. Before the stack is read: a typo'd name is said
    even when the template then stops at the parameter it meant, which has no Default."""
    declared = list(load_yaml(template).get("Parameters") or {})
    unknown = undeclared(overrides, declared)
    if unknown:
        print(f"parley dev: warning: {ignored_line(unknown, declared, template.name)}", file=sys.stderr)


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parley", description="Parley developer tools")
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser(
        "dev", help="run the template's WebSocket API locally (like API Gateway + Lambda + DynamoDB)",
        epilog="Ctrl-C (or SIGTERM) stops it cleanly, even during start-up: every open socket is closed with 1001 "
               "and its $disconnect runs, then the functions, DynamoDB Local and moto (if it ran) stop; exit status 0 (1 if DynamoDB Local died). A second Ctrl-C "
               "forces the exit (status 130).",
    )
    dev.add_argument("--template", default="template.yaml", help="SAM template (default: template.yaml)")
    dev.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1: this machine only); 0.0.0.0 opens the WebSocket "
                          "endpoint and the pages to your network, while the local AWS services and /dev/token keep "
                          "answering this machine only")
    dev.add_argument("--dev-tokens-for-other-machines", action="store_true",
                     help="with a --host other machines reach, let them get tokens from /dev/token too (what /ws-test "
                          "on another machine needs): anyone who can reach the port can then get a token for any user. "
                          "Without it they are refused and told to use `parley token USER` on this machine")
    dev.add_argument("--port", type=int, default=3001, help="0 picks a free port")
    dev.add_argument("--stage", default=None,
                     help="the stage in the URL (default: the template's stage name, else local)")
    dev.add_argument("--dynamodb", choices=("local", "moto"), default="local",
                     help="DynamoDB for the functions: AWS's DynamoDB Local, a child process (default; needs Java), "
                          "or moto's pure-Python one")
    dev.add_argument("--dynamodb-data", default=None, metavar="DIR", type=Path,
                     help="keep DynamoDB Local's data in DIR between runs (default: in memory, gone on exit)")
    dev.add_argument("--dynamodb-endpoint", default=None, metavar="URL", help="use a DynamoDB you run at URL (nothing is started for it)")
    dev.add_argument("--moto-mode", choices=("subprocess", "thread"), default="subprocess",
                     help="where moto's server runs when something needs it (--dynamodb moto, or a function calling an AWS "
                          "service other than DynamoDB, SSM, Lambda Invoke and @connections): its own process (default) "
                          "or a thread of the gateway")
    dev.add_argument("--allow-origins", default="", metavar="ORIGIN[,ORIGIN...]",
                     help="page origins allowed at the handshake, besides the built-in http://localhost:* and "
                          "http://127.0.0.1:* (e.g. http://192.168.1.20:5173); `make dev ORIGINS=...` passes it")
    dev.add_argument("--post-latency-ms", type=float, default=0.0, metavar="N", help="add N ms to every @connections call (simulates AWS)")
    dev.add_argument("--post-queue-limit", type=int, default=1000, metavar="N", help="@connections calls waiting on --post-latency-ms before 429")
    dev.add_argument("--parameter-overrides", nargs="*", default=[], metavar="KEY=VALUE",
                     help="template parameter values: KEY=VALUE or ParameterKey=KEY,ParameterValue=VALUE (as sam deploy); "
                          "one the template does not declare is ignored, with a warning, as sam deploy ignores it, "
                          "until a redeploy of an edited template that declares it")
    dev.add_argument("--stack-name", default="parley")
    dev.add_argument("--idle-timeout", type=float, default=600.0, metavar="SECONDS", help="AWS: 600")
    dev.add_argument("--max-connection-duration", type=float, default=7200.0, metavar="SECONDS", help="AWS: 7200")
    dev.add_argument("--integration-timeout", type=float, default=None, metavar="SECONDS", help="AWS: 29")
    dev.add_argument("--max-concurrency", type=int, default=32, metavar="N", help="execution environments per function")
    dev.add_argument("--prewarm", action="store_true",
                     help="start one execution environment per function before serving (default: on first invocation, as Lambda)")
    dev.add_argument("--no-prewarm", action="store_true", help=argparse.SUPPRESS)  # the default since environments start lazily
    dev.add_argument("--worker-idle-timeout", type=float, default=300.0, metavar="SECONDS",
                     help="stop an execution environment unused this long (0: never; default 300)")
    dev.add_argument("--no-reload", action="store_true", help="do not reload functions, the layer or the template when they change")
    dev.add_argument("--quiet", action="store_true", help="no per-invocation log lines")

    tok = sub.add_parser("token", help="print a dev JWT the local stack accepts (secret: $PARLEY_JWT_SECRET)")
    tok.add_argument("user")
    tok.add_argument("--name", default=None)
    tok.add_argument("--ttl", type=int, default=DEFAULT_TTL_S, metavar="SECONDS")
    tok.add_argument("--issuer", default=None)
    tok.add_argument("--audience", default=None)
    tok.add_argument("--rooms", default=None, metavar="JSON",
                     help='the rooms claim, e.g. \'{"case-*": ["read", "write"]}\' (see docs/SECURITY.md, "Room access")')

    sub.add_parser("test-connection", help="connect to a Parley endpoint and exercise it", add_help=False)
    return parser


def _raise_open_file_limit() -> None:
    """1,000 sockets plus worker pipes exceed the 256/1024 default soft limit of macOS/Linux shells."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass


def parley_extras_for(args: argparse.Namespace, template: Path) -> "ParleyExtras":
    """Parley's additions as `parley dev`'s options ask: client files next to the template, and who gets dev tokens."""
    from .parley_extras import ParleyExtras

    return ParleyExtras(template.resolve().parent / "client", tokens_for_other_machines=args.dev_tokens_for_other_machines,
                        allow_origins=_split(args.allow_origins))


async def run_dev(args: argparse.Namespace) -> int:
    """`parley dev`. Exit status: 0 after a clean stop (Ctrl-C or SIGTERM, also during start-up), 1 when
    the gateway cannot start, 2 for a bad template, 130 when a second Ctrl-C forces the exit."""
    console = Console(invocations=not args.quiet)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():  # a second Ctrl-C: give up on the clean shutdown
            console.line("Forced exit.")
            console.flush()  # os._exit skips the interpreter's flush of stdout
            os._exit(130)
        stop.set()
        console.line("Stopping (Ctrl-C again to force) ...")

    # First thing: a Ctrl-C during start-up must stop what has started, not kill the process half-way.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    from .gateway.server import Gateway, GatewayConfig

    try:
        overrides = parse_overrides(args.parameter_overrides)
    except OverrideRefused as exc:
        print(f"parley dev: error: argument --parameter-overrides: {exc}", file=sys.stderr)
        return 2
    template = Path(args.template)
    if not template.is_file():
        print(f"parley dev: template not found: {template}", file=sys.stderr)
        return 2
    try:
        _warn_undeclared(overrides, template)
        stack = load_stack(template, args.stack_name, overrides)
        stack.api  # noqa: B018 - fail early without a WebSocket API
    except TemplateError as exc:
        print(f"parley dev: {exc}", file=sys.stderr)
        return 2
    config = GatewayConfig(
        host=args.host, port=args.port, stage=args.stage or stack.api.stage_name or "local",
        idle_timeout=args.idle_timeout, max_connection_duration=args.max_connection_duration,
        integration_timeout=args.integration_timeout,
        post_latency_ms=args.post_latency_ms, post_queue_limit=args.post_queue_limit,
        max_concurrency=args.max_concurrency, prewarm=args.prewarm and not args.no_prewarm,
        worker_idle_timeout=args.worker_idle_timeout, reload=not args.no_reload,
        dynamodb=args.dynamodb, dynamodb_endpoint=args.dynamodb_endpoint, dynamodb_data=args.dynamodb_data,
        moto_mode=args.moto_mode,
    )
    if args.dynamodb_data is not None and (args.dynamodb != "local" or args.dynamodb_endpoint):
        print("parley dev: --dynamodb-data is for DynamoDB Local: drop --dynamodb moto / --dynamodb-endpoint, or drop --dynamodb-data",
              file=sys.stderr)
        return 2
    try:  # the extras' overrides (the page origins) may load the template again, and a Rule may refuse them
        gateway = Gateway(stack, config, console, extras=parley_extras_for(args, template))
    except TemplateError as exc:
        print(f"parley dev: {exc}", file=sys.stderr)
        return 2
    _raise_open_file_limit()
    if stop.is_set():
        return 0
    console.line(f"Starting the local gateway for {template} ...")
    starting = asyncio.create_task(gateway.start())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():  # Ctrl-C during start-up: cancel it, then release what it started
        starting.cancel()
        await asyncio.wait({starting})
        if not starting.cancelled() and starting.exception() is not None:
            console.line(f"(start-up had failed: {starting.exception()!r})")
        console.line("Start-up interrupted: stopping what had started ...")
        await gateway.stop()
        console.line("Stopped.")
        return 0
    exc = starting.exception()
    if exc is not None:
        stopped.cancel()
        await gateway.stop()
        reason = _start_failure(exc, args)
        if reason is None:
            raise exc
        print(f"parley dev: {reason}", file=sys.stderr)
        return 1
    for line in gateway.banner():
        console.line(line)
    console.line(f"Ready on {gateway.ws_url}  (Ctrl-C to stop)")
    failed = asyncio.create_task(gateway.failed.wait())
    await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
    console.line(f"Shutting down: closing {len(gateway.connections)} connection(s) with 1001 Going away ...")
    await gateway.stop()
    stopped.cancel()
    failed.cancel()
    if gateway.failure is not None:
        print(f"parley dev: {gateway.failure}", file=sys.stderr)
        return 1
    console.line("Stopped.")
    return 0


def _start_failure(exc: BaseException, args: argparse.Namespace) -> str | None:
    """One line naming the fix for a start-up failure the developer can fix; None for a bug."""
    from .local_aws.dynamodb_local import DynamoDBLocalError
    from .local_aws.tables import TableUpgradeError

    if isinstance(exc, (DynamoDBLocalError, TableUpgradeError)):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return (f"port {args.port} on {args.host} is already in use (another parley dev?): stop that one, "
                f"or pick another port (`make dev PORT={args.port + 1}`, or `parley dev --port 0` for any free one)")
    if isinstance(exc, OSError):
        return f"cannot start: {exc}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "test-connection":
        from .connection_check import main as connection_check

        return int(connection_check(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    if args.command == "token":
        try:
            print(make_token(args.user, args.name, args.ttl, issuer=args.issuer, audience=args.audience, rooms=args.rooms))
        except ValueError as exc:
            print(f"parley token: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "dev":
        try:
            return asyncio.run(run_dev(args), loop_factory=new_event_loop)
        except KeyboardInterrupt:  # Ctrl-C before run_dev installed its handler: nothing had started yet
            return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
