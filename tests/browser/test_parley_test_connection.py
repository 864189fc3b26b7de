"""`parley test-connection` against a running `parley dev`: all PASS, and a clean failure for a bad token."""

from __future__ import annotations

import subprocess
import sys
import time

import jwt

from parley_local import connection_check as tc
from parley_local.tokens import DEV_SECRET_DEFAULT, make_token
from parley_testing.browser import DevGateway
from parley_testing.ports import free_port
from parley_testing.template import ROOT as REPO

STEPS = [
    "connect",
    "message -> message_response",
    "join_room -> participants_list, chat_history",
    "chat_message -> message_received, chat_update",
    "leave_room",
]


def test_passes_against_the_local_gateway(gateway: DevGateway, capsys):
    rc = tc.main([gateway.ws, "--user", "tc-user", "--timeout", "15"])
    out = capsys.readouterr().out
    assert rc == 0, out
    for step in STEPS:
        assert f"PASS  {step}" in out, out
    assert "FAIL" not in out
    assert "dev token for 'tc-user' from the local gateway" in out


def test_signed_dev_token_works_too(gateway: DevGateway, capsys):
    token = make_token("signed-user", "Signed User")
    rc = tc.main([gateway.ws, "--token", token])
    out = capsys.readouterr().out
    assert rc == 0, out


def test_cli_entry_point(gateway: DevGateway):
    proc = subprocess.run(
        [sys.executable, "-m", "parley_local.cli", "test-connection", gateway.ws],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASS") >= len(STEPS)


def test_bad_token_fails_with_401(gateway: DevGateway, capsys):
    rc = tc.main([gateway.ws, "--token", "not-a-jwt"])
    out = capsys.readouterr().out
    assert rc != 0
    assert "FAIL  connect" in out and "401" in out, out


def test_expired_or_wrongly_signed_token_fails(gateway: DevGateway, capsys):
    now = int(time.time())
    expired = jwt.encode({"sub": "old", "iat": now - 7200, "exp": now - 3600}, DEV_SECRET_DEFAULT, algorithm="HS256")
    assert tc.main([gateway.ws, "--token", expired]) != 0
    wrong = jwt.encode({"sub": "x", "iat": now, "exp": now + 600}, "some-other-secret-that-is-long-enough-for-hs256", algorithm="HS256")
    assert tc.main([gateway.ws, "--token", wrong]) != 0
    out = capsys.readouterr().out
    assert out.count("401") >= 2, out


def test_nothing_listening_is_a_clear_failure(capsys):
    port = free_port()
    rc = tc.main([f"ws://127.0.0.1:{port}/local", "--timeout", "3"])
    out = capsys.readouterr().out
    assert rc == 2
    assert "cannot connect" in out and "parley dev" in out
