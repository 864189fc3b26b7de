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
from typing import Callable

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


async def test_an_override_applies_once_an_edited_template_declares_its_parameter(copy_stack: Callable[[Path], Path], tmp_path: Path):
    """Every override is kept while `parley dev` runs: the redeploy of a template that now declares one applies
    it (over the Default), and says so in its one line; an override still undeclared is named again only then,
    when the set of ignored ones changes, not on every save."""
    template = copy_stack(SMALL_TEMPLATE)
    records = tmp_path / "records"
    dev = DevProcess(["--template", str(template), "--port", "0", "--dynamodb", "moto", "--stack-name", f"declared{time.time_ns() % 10**6}",
                      "--parameter-overrides", f"RecordDir={records}", "Fixture=given", "Typo=1"])
    try:
        dev.wait_ready(120)
        assert [line.rstrip("\n") for line in dev.lines if "not a parameter of" in line] == [
            "parley dev: warning: --parameter-overrides Fixture, Typo: not a parameter of template.yaml, "
            "ignored as sam deploy ignores it; it declares RecordDir"], dev.output()
        text = template.read_text()
        template.write_text(text.replace("Parameters:\n", "Parameters:\n  Fixture:\n    Type: String\n    Default: one\n").replace(
            "      Handler: echo.handler\n",
            "      Handler: echo.handler\n      Environment:\n        Variables:\n          FIXTURE_VALUE: !Ref Fixture\n"))
        reloads = wait_for(lambda: [line.rstrip("\n") for line in dev.lines if "Template reloaded" in line], 30, what="the reload line")
        assert len(reloads) == 1 and "changed EchoFunction" in reloads[0], dev.output()
        assert reloads[0].endswith("; --parameter-overrides Fixture now applied (template.yaml declares it); warning: "
                                   "--parameter-overrides Typo: not a parameter of template.yaml, ignored as sam deploy "
                                   "ignores it; it declares Fixture, RecordDir"), reloads[0]
        async with websockets.connect(dev.ws_url, open_timeout=30) as ws:
            assert (await request(ws, {"action": "echo"}))["env"]["FIXTURE_VALUE"] == "given"
            template.write_text(template.read_text().replace("Default: one", "Default: two"))
            reloads = wait_for(lambda: [line for line in dev.lines if "Template reloaded" in line][1:], 30, what="the second reload line")
            assert "parameter-overrides" not in reloads[0], reloads[0]  # the same one ignored: not said again
            assert (await request(ws, {"action": "echo"}))["env"]["FIXTURE_VALUE"] == "given"  # the override, not the Default
    finally:
        dev.stop()


def test_a_stack_keeps_every_override_given_and_ignores_the_undeclared_ones():
    from parley_local.gateway.template import load_stack
    from parley_local.parameter_overrides import redeploy_note

    stack = load_stack(SMALL_TEMPLATE, "fx", {"RecordDir": "/tmp/x", "Typo": "1"})
    assert stack.overrides == {"RecordDir": "/tmp/x", "Typo": "1"}
    assert stack.undeclared_overrides == ["Typo"]
    assert stack.parameters == {"RecordDir": "/tmp/x"}
    assert redeploy_note(["Typo"], ["Typo"], ["RecordDir"], "t.yaml") == ""
    assert redeploy_note(["A", "B"], [], ["A", "B"], "t.yaml") == "; --parameter-overrides A, B now applied (t.yaml declares them)"


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
