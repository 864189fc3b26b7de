"""Execution environments as Lambda runs them, and redeploys on change, over real sockets (issue 15).

Each test copies the small fixture stack (template, functions, layer) into its own folder, so it
can edit code and template on disk while a gateway serves them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from parley_testing.fixture_clients import request
from parley_testing.gateway_thread import SMALL_TEMPLATE, RunningGateway
from parley_testing.redeploys import edit, lines_with
from parley_testing.waiting import wait_for

import websockets


@pytest.fixture
def stack_dir(copy_stack: Callable[[Path], Path]) -> Path:
    """A private copy of the small fixture stack, free to edit."""
    return copy_stack(SMALL_TEMPLATE).parent


@pytest.fixture
def live(stack_dir: Path, tmp_path: Path) -> Iterator[RunningGateway]:
    g = RunningGateway(stack_dir / "template.yaml", tmp_path / "records", reload_interval=0.1, worker_idle_timeout=0).start()
    yield g
    g.stop()


def environments(g: RunningGateway) -> dict[str, int]:
    assert g.gateway.runtime is not None
    return g.call(lambda: {lid: len(p.workers) + p.starting for lid, p in g.gateway.runtime.pools.items()})  # type: ignore[union-attr]


async def echo(ws: object) -> dict:
    return await request(ws, {"action": "echo"})


async def test_no_environment_before_the_first_invocation_then_one_cold_start(live: RunningGateway):
    assert environments(live) == {"DisconnectFunction": 0, "EchoFunction": 0}
    async with websockets.connect(live.ws_url, open_timeout=10) as ws:
        await echo(ws)
        await echo(ws)
    assert environments(live)["EchoFunction"] == 1
    echo_lines = [line for line in live.console.lines if " echo " in line]
    assert len(echo_lines) == 2
    assert "(cold start, init " in echo_lines[0]
    assert "cold start" not in echo_lines[1]


async def test_an_open_socket_starts_one_disconnect_environment_ahead_of_its_disconnect(live: RunningGateway):
    """Lambda's proactive initialization: the `$disconnect` an open socket will need does not wait for a cold start."""
    async with websockets.connect(live.ws_url, open_timeout=10) as ws:
        wait_for(lambda: environments(live)["DisconnectFunction"] == 1, 30, what="the $disconnect environment started")
        await echo(ws)
        async with websockets.connect(live.ws_url, open_timeout=10) as second:
            await echo(second)
        assert environments(live)["DisconnectFunction"] == 1  # one, however many sockets open
        wait_for(lambda: lines_with(live, "$disconnect"), 10, what="the second socket's $disconnect")  # not overlapping the next
    wait_for(lambda: len(lines_with(live, "$disconnect")) == 2, 10, what="both $disconnect lines")
    assert not [line for line in lines_with(live, "$disconnect") if "cold start" in line]
    assert environments(live)["DisconnectFunction"] == 1


async def test_idle_environments_are_reaped(tmp_path: Path):
    g = RunningGateway(SMALL_TEMPLATE, tmp_path / "records", worker_idle_timeout=0.3, reload=False).start()
    try:
        async with websockets.connect(g.ws_url, open_timeout=10) as ws:
            await echo(ws)
            assert environments(g)["EchoFunction"] == 1
            wait_for(lambda: environments(g)["EchoFunction"] == 0, 10, what="the idle environment stopped")
            assert lines_with(g, "[EchoFunction] 1 environment(s) idle for 0.3 s stopped")
            reply = await echo(ws)  # the socket is still served: a new cold start
            assert reply["route"] == "echo"
        assert "(cold start" in [line for line in g.console.lines if " echo " in line][-1]
    finally:
        g.stop()


async def test_code_change_reloads_without_dropping_the_socket(live: RunningGateway, stack_dir: Path):
    async with websockets.connect(live.ws_url, open_timeout=10) as ws:
        first = await echo(ws)
        assert "reloaded" not in first
        edit(stack_dir / "functions" / "echo.py", '"route": event', '"reloaded": True, "route": event')
        wait_for(lambda: lines_with(live, "Reloaded"), 10, what="the reload line")
        second = await echo(ws)
        assert second["reloaded"] is True
        assert second["requestContext"]["connectionId"] == first["requestContext"]["connectionId"]
    reloads = lines_with(live, "Reloaded")
    assert len(reloads) == 1
    assert "DisconnectFunction, EchoFunction" in reloads[0] and "echo.py changed" in reloads[0]  # one CodeUri for both


async def test_layer_change_reloads_the_functions_using_it(live: RunningGateway, stack_dir: Path):
    layer_file = next((stack_dir / "layer").rglob("fixture_common.py"))
    async with websockets.connect(live.ws_url, open_timeout=10) as ws:
        await echo(ws)
        layer_file.write_text(layer_file.read_text() + "\nLAYER_EDITED = True\n")
        wait_for(lambda: lines_with(live, "fixture_common.py changed"), 10, what="the reload line")
        assert (await echo(ws))["route"] == "echo"
    assert "(cold start" in [line for line in live.console.lines if " echo " in line][-1]


async def test_syntax_error_is_the_invocations_error_and_the_gateway_keeps_running(live: RunningGateway, stack_dir: Path):
    source = stack_dir / "functions" / "echo.py"
    good = source.read_text()
    async with websockets.connect(live.ws_url, open_timeout=10) as ws:
        await echo(ws)
        source.write_text(good + "\ndef broken(:\n")
        wait_for(lambda: lines_with(live, "Reloaded"), 10, what="the reload line")
        frame = await echo(ws)
        assert frame["message"] == "Internal server error"  # what API Gateway sends when the integration fails
        init = wait_for(lambda: lines_with(live, "init failed"), 10, what="the init failure line")
        assert "Runtime.UserCodeSyntaxError: Syntax error in module 'echo'" in init[0] and "echo.py, line" in init[0]
        assert "error Runtime.UserCodeSyntaxError" in [line for line in live.console.lines if " echo " in line][-1]
        source.write_text(good)
        wait_for(lambda: len(lines_with(live, "Reloaded")) == 2, 10, what="the second reload line")
        assert (await echo(ws))["route"] == "echo"


async def test_a_second_save_in_the_same_second_is_run_though_the_first_was_compiled(live: RunningGateway, stack_dir: Path):
    """Python's bytecode cache (`__pycache__`) trusts a source whose size and modification time in whole
    seconds match: a save imported by a cold start, then a second save of the same size within that second
    (a quick fix, a revert), would leave every later cold start running the first save though the watcher
    reported the second one."""
    source = stack_dir / "functions" / "echo.py"
    good = source.read_text()
    second = int(time.time()) * 1_000_000_000

    def save(version: int, at_ns: int) -> None:
        source.write_text(good.replace('"route": event', f'"saved": {version}, "route": event'))
        os.utime(source, ns=(at_ns, at_ns))  # both saves in one second, whatever the machine's pace

    async with websockets.connect(live.ws_url, open_timeout=10) as ws:
        save(1, second + 100_000_000)
        wait_for(lambda: lines_with(live, "Reloaded"), 10, what="the first reload line")
        assert (await echo(ws))["saved"] == 1  # a cold start: echo.py compiled and its bytecode cached
        save(2, second + 600_000_000)
        wait_for(lambda: len(lines_with(live, "Reloaded")) == 2, 10, what="the second reload line")
        assert (await echo(ws))["saved"] == 2


async def test_a_function_folder_renamed_away_is_lambdas_import_error_until_it_is_back(live: RunningGateway, stack_dir: Path):
    """A `git checkout`, a rename or a delete leaves the CodeUri missing for a while: the invocation gets
    Lambda's error for a module it cannot find, the log says which, and the folder put back serves again."""
    folder = stack_dir / "functions"
    async with websockets.connect(live.ws_url, open_timeout=10) as ws:
        await echo(ws)
        folder.rename(stack_dir / "functions.away")
        wait_for(lambda: lines_with(live, "Reloaded"), 10, what="the reload line")
        assert (await echo(ws))["message"] == "Internal server error"
        init = wait_for(lambda: lines_with(live, "init failed"), 10, what="the init failure line")
        assert "Runtime.ImportModuleError: Unable to import module 'echo': No module named 'echo'" in init[0], init[0]
        (stack_dir / "functions.away").rename(folder)
        wait_for(lambda: len(lines_with(live, "Reloaded")) == 2, 10, what="the second reload line")
        assert (await echo(ws))["route"] == "echo"


async def test_template_change_applies_to_new_connections(live: RunningGateway, stack_dir: Path):
    template = stack_dir / "template.yaml"
    async with websockets.connect(live.ws_url, open_timeout=10) as before:
        await echo(before)
        edit(template, "RouteKey: echo", "RouteKey: shout")
        line = wait_for(lambda: lines_with(live, "Template reloaded"), 10, what="the template line")[0]
        assert "routes changed: applies to new connections" in line
        async with websockets.connect(live.ws_url, open_timeout=10) as after:
            reply = await request(after, {"action": "shout"})
            assert reply["route"] == "shout"
            refused = await request(after, {"action": "echo"})
            assert refused["message"] == "Forbidden"  # no such route any more, no `$default`
        assert (await echo(before))["route"] == "echo"  # the open socket keeps the routes it connected with


async def test_a_new_route_selection_expression_applies_to_new_connections_and_the_log_says_so(
        live: RunningGateway, stack_dir: Path):
    async with websockets.connect(live.ws_url, open_timeout=10) as before:
        await echo(before)
        edit(stack_dir / "template.yaml", "${request.body.action}", "${request.body.kind}")
        line = wait_for(lambda: lines_with(live, "Template reloaded"), 10, what="the template line")[0]
        assert "route selection expression changed: applies to new connections" in line, line
        async with websockets.connect(live.ws_url, open_timeout=10) as after:
            assert (await request(after, {"kind": "echo"}))["route"] == "echo"
        assert (await echo(before))["route"] == "echo"  # the open socket keeps the expression it connected with


async def test_a_checkout_that_changes_template_and_code_is_one_deploy_and_one_line(live: RunningGateway, stack_dir: Path):
    """As one `sam deploy` ships both: the template's line names the code reloaded with it, no second line."""
    async with websockets.connect(live.ws_url, open_timeout=10) as ws:
        await echo(ws)
        edit(stack_dir / "template.yaml", "RouteKey: echo", "RouteKey: shout")
        edit(stack_dir / "functions" / "echo.py", '"route": event', '"checked_out": True, "route": event')
        line = wait_for(lambda: lines_with(live, "Template reloaded"), 10, what="the template line")[0]
        assert "routes changed: applies to new connections" in line, line
        assert "code reloaded for DisconnectFunction, EchoFunction (" in line and "echo.py" in line, line
        assert (await echo(ws))["checked_out"] is True  # the open socket: its routes, the new code
        async with websockets.connect(live.ws_url, open_timeout=10) as after:
            assert (await request(after, {"action": "shout"}))["checked_out"] is True
        await asyncio.sleep(0.5)  # five looks at the files
    assert not lines_with(live, "Reloaded"), lines_with(live, "Reloaded")
    assert len(lines_with(live, "Template reloaded")) == 1


async def test_code_saved_with_a_broken_template_is_still_reloaded_and_said_in_the_refusal(live: RunningGateway, stack_dir: Path):
    async with websockets.connect(live.ws_url, open_timeout=10) as ws:
        await echo(ws)
        (stack_dir / "template.yaml").write_text("Resources: [not, a, map\n")
        edit(stack_dir / "functions" / "echo.py", '"route": event', '"fixed": True, "route": event')
        line = wait_for(lambda: lines_with(live, "Template changed but not applied"), 10, what="the refusal line")[0]
        assert "still serving the previous template; code reloaded for DisconnectFunction, EchoFunction" in line, line
        assert (await echo(ws))["fixed"] is True
    assert not lines_with(live, "Reloaded"), lines_with(live, "Reloaded")


async def test_broken_template_keeps_the_previous_one(live: RunningGateway, stack_dir: Path):
    (stack_dir / "template.yaml").write_text("Resources: [not, a, map\n")
    line = wait_for(lambda: lines_with(live, "Template changed but not applied"), 10, what="the refusal line")[0]
    assert "still serving the previous template" in line
    async with websockets.connect(live.ws_url, open_timeout=10) as ws:
        assert (await echo(ws))["route"] == "echo"
    assert json.dumps(environments(live))  # the runtime is intact


async def test_a_function_moved_to_another_code_folder_is_reloaded_once_by_the_template(live: RunningGateway, stack_dir: Path):
    """The moved function's new folder is watched from the redeploy on; its files are not news, so no
    spurious "Reloaded" line and no second retirement of the environment that served since."""
    shutil.copytree(stack_dir / "functions", stack_dir / "moved")
    edit(stack_dir / "moved" / "echo.py", '"route": event', '"moved": True, "route": event')
    template = stack_dir / "template.yaml"
    edit(template, "      Handler: echo.handler\n", "      Handler: echo.handler\n      CodeUri: moved/\n")
    line = wait_for(lambda: lines_with(live, "Template reloaded"), 10, what="the template line")[0]
    assert "changed EchoFunction" in line
    async with websockets.connect(live.ws_url, open_timeout=10) as ws:
        assert (await echo(ws))["moved"] is True
        await asyncio.sleep(1.0)  # ten looks at the files
        assert not lines_with(live, "Reloaded"), lines_with(live, "Reloaded")
        assert (await echo(ws))["moved"] is True
    assert "cold start" not in [line for line in live.console.lines if " echo " in line][-1]


async def test_a_changed_parameter_default_applies_on_the_next_redeploy(live: RunningGateway, stack_dir: Path):
    """A redeploy reads the template with the values given on the command line, not with the ones
    the last deploy resolved: a Default edited on disk applies, as on `sam deploy`."""
    template = stack_dir / "template.yaml"
    edit(template, "Parameters:\n", "Parameters:\n  Fixture:\n    Type: String\n    Default: one\n")
    edit(template, "      Handler: echo.handler\n",
         "      Handler: echo.handler\n      Environment:\n        Variables:\n          FIXTURE_VALUE: !Ref Fixture\n")
    wait_for(lambda: lines_with(live, "Template reloaded"), 10, what="the first template line")
    async with websockets.connect(live.ws_url, open_timeout=10) as ws:
        assert (await echo(ws))["env"]["FIXTURE_VALUE"] == "one"
        edit(template, "Default: one", "Default: two")
        wait_for(lambda: len(lines_with(live, "Template reloaded")) == 2, 10, what="the second template line")
        assert (await echo(ws))["env"]["FIXTURE_VALUE"] == "two"
    assert live.gateway.stack.overrides == {"RecordDir": str(live.record_dir)}  # what was given, nothing resolved


def test_a_template_that_comes_to_name_a_secret_gets_the_dev_one_and_a_secret_put_since_is_kept(live: RunningGateway, stack_dir: Path):
    """After a redeploy the extras seed the dev JWT secret under a `JwtSecretParameterName` the template now
    names, as a start would; one the developer put there since (PutParameter, Overwrite) survives every later
    redeploy: tokens signed with it keep passing the authorizer."""
    from parley_local.tokens import dev_secret

    name = "/parley/redeployed/jwt-secret"
    template = stack_dir / "template.yaml"
    edit(template, "Parameters:\n", f"Parameters:\n  JwtSecretParameterName:\n    Type: String\n    Default: {name}\n")
    wait_for(lambda: lines_with(live, "Template reloaded"), 30, what="the reload line")
    wait_for(lambda: lines_with(live, f"JWT secret: SSM {name}"), 10, what="the seeding line")
    store = live.gateway.parameter_store
    assert live.call(lambda: store.get(name).value) == dev_secret()
    live.call(lambda: store.put(name, "the developer's own secret", overwrite=True))
    edit(template, f"Default: {name}\n", f"Default: {name}\n    Description: edited\n")
    wait_for(lambda: len(lines_with(live, "Template reloaded")) == 2, 30, what="the second reload line")
    assert live.call(lambda: store.get(name).value) == "the developer's own secret"
    assert len(lines_with(live, "JWT secret: SSM")) == 1
