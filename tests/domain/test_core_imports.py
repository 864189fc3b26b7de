"""`parley.core` imports only the standard library and pydantic: checked in a fresh interpreter,
where `sys.modules` after importing every core module shows what they really pulled in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import parley.core

FORBIDDEN = ("boto3", "botocore", "urllib3", "pynamodb", "aws_lambda_powertools", "jwt", "parley.aws")
CORE = Path(parley.core.__file__).parent
LAYER = CORE.parent.parent


def loaded_after_importing(modules: list[str]) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=LAYER, capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)


def test_core_modules_import_no_aws_library():
    core_modules = sorted(f"parley.core.{path.stem}" for path in CORE.glob("*.py") if path.stem != "__init__")
    assert {"parley.core.service", "parley.core.protocol", "parley.core.ports", "parley.core.model"} <= set(core_modules)
    loaded = loaded_after_importing(core_modules)
    offenders = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert offenders == []


def test_the_check_sees_an_aws_import():
    """The same check on an adapter module finds what it imports, so the test above can fail."""
    loaded = loaded_after_importing(["parley.aws.dynamodb_store"])
    assert "pynamodb" in loaded and "botocore" in loaded
