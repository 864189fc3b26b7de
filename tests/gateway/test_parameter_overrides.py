"""`parley dev --parameter-overrides`, run as the developer runs it: a malformed item stops it with one
argparse-style line (status 2) before anything starts; both of SAM's forms are read; an override the
template does not declare is ignored as `sam deploy` ignores it, with one warning naming it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets

from parley_testing.dev_process import DevProcess
from parley_testing.fixture_clients import request
from parley_testing.gateway_thread import SMALL_TEMPLATE
from parley_testing.template import ROOT
from parley_testing.waiting import wait_for


@pytest.mark.parametrize("item", ["ParameterKey=RecordDir,ParameterValue", "RecordDir", "ParameterKey=RecordDir",
                                  "ParameterKey=RecordDir,Value=x", "=x", "Record Dir=x"])
def test_a_malformed_item_is_one_line_and_status_2_before_anything_starts(item: str):
    proc = subprocess.Popen(
        [sys.executable, "-m", "parley_local.cli", "dev", "--template", str(SMALL_TEMPLATE), "--port", "0",
         "--dynamodb", "moto", "--parameter-overrides", "EchoValue=ok", item],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # it started serving: stop it and all it started
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""  # not even "Starting ..."
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert repr(item) in lines[0]
    assert "KEY=VALUE or ParameterKey=KEY,ParameterValue=VALUE" in lines[0]
    assert lines[0].startswith("parley dev: error: argument --parameter-overrides:")


async def test_both_forms_apply_and_an_undeclared_parameter_is_ignored_with_a_warning(tmp_path: Path):
    records = tmp_path / "records"
    dev = DevProcess(["--template", str(SMALL_TEMPLATE), "--port", "0", "--dynamodb", "moto", "--no-reload",
                      "--stack-name", f"overrides{time.time_ns() % 10**6}",
                      "--parameter-overrides", f"ParameterKey=RecordDir,ParameterValue={records}", "RecordDri=typo", "Unrelated=1"])
    try:
        dev.wait_ready(120)
        warnings = [line for line in dev.lines if "not a parameter of" in line]
        assert len(warnings) == 1, dev.output()
        assert warnings[0].startswith("parley dev: warning: --parameter-overrides RecordDri (did you mean RecordDir?), Unrelated:")
        assert "ignored as sam deploy ignores it; it declares RecordDir" in warnings[0]
        async with websockets.connect(dev.ws_url, open_timeout=30) as ws:
            assert (await request(ws, {"action": "echo"}))["route"] == "echo"
        wait_for(lambda: list(records.glob("*.MESSAGE.*.json")), 10, what="the echo record in the overridden RecordDir")
    finally:
        dev.stop()


@pytest.mark.parametrize("arguments,expected", [
    (["A=1 B=2"], {"A": "1", "B": "2"}),  # samconfig.toml's one string
    (["Greeting='hello world' B=2"], {"Greeting": "hello world", "B": "2"}),
    (["ParameterKey=A,ParameterValue=1 ParameterKey=B,ParameterValue=\"x y\""], {"A": "1", "B": "x y"}),
    (["A=1", "A=2"], {"A": "2"}),  # a later item wins
    (["Url=https://x.example/a=b"], {"Url": "https://x.example/a=b"}),
    (["Empty="], {"Empty": ""}),
    (["Path=C:\\dir\\x", 'J={"k":"v"}'], {"Path": "C:\\dir\\x", "J": '{"k":"v"}'}),  # unquoted: as written
    (['G="say \\"hi\\"" H=\'it\\s\''], {"G": 'say "hi"', "H": "it\\s"}),
])
def test_items_are_read_as_sam_deploy_reads_them(arguments: list[str], expected: dict[str, str]):
    from parley_local.parameter_overrides import parse_overrides

    assert parse_overrides(arguments) == expected


@pytest.mark.parametrize("argument,named", [("A=1 B", "'B' in 'A=1 B'"), ("A='unclosed", "\"A='unclosed\": a quote is not closed")])
def test_a_bad_item_among_several_is_named_with_its_argument(argument: str, named: str):
    from parley_local.parameter_overrides import OverrideRefused, parse_overrides

    with pytest.raises(OverrideRefused) as refused:
        parse_overrides([argument])
    assert str(refused.value).startswith(f"cannot read {named}")


@pytest.mark.parametrize("text,problem", [("Resources: [not, a, map\n", "line 2, column 1: not valid YAML"),
                                          ("- just\n- a list\n", "not a CloudFormation template")])
def test_a_template_that_is_not_one_stops_it_with_one_line(tmp_path: Path, text: str, problem: str):
    template = tmp_path / "template.yaml"
    template.write_text(text)
    done = subprocess.run([sys.executable, "-m", "parley_local.cli", "dev", "--template", str(template), "--port", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()] and problem in done.stderr  # one line, no traceback
    assert done.stderr.startswith(f"parley dev: {template}")
