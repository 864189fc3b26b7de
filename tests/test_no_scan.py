"""No shipped code path may Scan: fan-out and clean-up are Queries (the handler suite also
fails any test during which a handler issued a Scan at run time)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = [ROOT / "functions", ROOT / "layers" / "common" / "python"]


def test_no_scan_call_or_operation_name_in_shipped_code():
    offenders = []
    files = [path for base in SHIPPED for path in base.rglob("*.py")]
    assert len(files) > 10
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in {"scan", "parallel_scan", "rate_limited_scan"}:
                offenders.append(f"{path}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.Constant) and node.value in {"Scan", "scan"}:
                offenders.append(f"{path}:{node.lineno} {node.value!r}")
    assert offenders == []
