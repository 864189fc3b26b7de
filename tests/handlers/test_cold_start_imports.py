"""What a function's cold start imports, in a fresh interpreter started as Lambda starts it: `$connect`
and the authorizer call no DynamoDB API and post nothing, so they must not pay for importing the chat
service, the store, the sender or the settings they use (benchmarks/cold_start_bench.py times it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from parley_testing.functions import lambda_import_env

CHAT_MODULES = ("parley.aws.config", "parley.aws.dynamodb_store", "parley.aws.lambda_routes", "parley.aws.management_api",
                "parley.core.protocol", "parley.core.service", "pynamodb")


def chat_modules_imported_by(folder: str) -> list[str]:
    code = "import json, sys\nimport app\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, **lambda_import_env(folder)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd="/tmp", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = set(json.loads(out.stdout.splitlines()[-1]))
    return [name for name in CHAT_MODULES if name in loaded]


@pytest.mark.parametrize("folder", ["connect", "authorizer"])
def test_connect_and_the_authorizer_import_none_of_the_chat(folder):
    assert chat_modules_imported_by(folder) == []


def test_a_chat_function_imports_all_of_it():
    """The same check on a message function finds every module, so the test above can fail."""
    assert chat_modules_imported_by("chat_message") == list(CHAT_MODULES)
