"""The test code's layout: shared test code lives in `parley_testing`, never in a test module, and
only one place decides where the Lambda layer is imported from.

Why: a test that imports another test module (or a benchmark that reaches into tests/) makes test
files a library without saying so, and runs the imported module's fixtures and set-up where
nobody expects them. A `sys.path` edit makes an import work on one checkout layout and hides
which code is really imported. The layer (`layers/common/python`, Lambda's /opt/python) is not
an installed package, so something must put it on the path: `parley_testing.functions`, for this
process (`import_the_layer`) and for child processes (`lambda_import_env`), and nothing else.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from parley_testing.source_scan import parsed_sources, write_tree

THIS_FILE = Path(__file__).resolve()
REPO = THIS_FILE.parents[1]
SCANNED = ("tests", "benchmarks", "parley_testing")
ALLOWED_PATH_EDITS = {("parley_testing/functions.py", "import_the_layer"), ("parley_testing/functions.py", "lambda_import_env")}

_PATH_EDIT_IN_CODE = re.compile(r"sys\.path\s*(\[|\.(insert|append|extend)\b|\+?=)")


def _imports_a_test_module(node: ast.AST, in_package: bool) -> str | None:
    if isinstance(node, ast.ImportFrom):
        names = [node.module or ""] if node.level == 0 else [f"{'.' * node.level}{node.module or ''}"]
    elif isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        return None
    for name in names:
        top = name.split(".")[0]
        if (name.startswith(".") and not in_package) or top in ("tests", "conftest") or top.startswith("test_"):
            return name
    return None


def _touches_the_import_path(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) and node.value.id == "sys":
        return True
    if isinstance(node, ast.ImportFrom) and node.module == "sys" and any(alias.name == "path" for alias in node.names):
        return True
    if isinstance(node, ast.keyword) and node.arg == "PYTHONPATH":
        return True
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value == "PYTHONPATH" or bool(_PATH_EDIT_IN_CODE.search(node.value))  # an env key, or code for a child
    return False


def _docstrings(tree: ast.Module) -> set[int]:
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))]
    return {id(n.body[0].value) for n in nodes if n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}


def findings(root: Path) -> tuple[list[str], set[tuple[str, str]]]:
    """(imports of test modules as "file:line name", places that touch the import path as (file, function))."""
    test_imports: list[str] = []
    path_edits: set[tuple[str, str]] = set()
    for relative, tree in parsed_sources(root, SCANNED, skip=THIS_FILE):  # this file holds the forbidden forms as data
        docstrings = _docstrings(tree)
        in_package = relative.startswith("parley_testing/")

        def visit(node: ast.AST, function: str) -> None:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                function = node.name
            name = _imports_a_test_module(node, in_package=in_package)
            if name:
                test_imports.append(f"{relative}:{node.lineno} {name}")
            if id(node) not in docstrings and _touches_the_import_path(node):
                path_edits.add((relative, function))
            for child in ast.iter_child_nodes(node):
                visit(child, function)

        visit(tree, "<module>")
    return test_imports, path_edits


def test_no_test_module_is_imported():
    test_imports, _ = findings(REPO)
    assert test_imports == [], "move what they share into parley_testing (fixtures may stay in a conftest.py)"


def test_only_parley_testing_functions_puts_the_layer_on_the_import_path():
    _, path_edits = findings(REPO)
    assert path_edits == ALLOWED_PATH_EDITS


def test_the_check_sees_what_it_forbids(tmp_path):
    """The scan itself can fail: each forbidden form is found, docstrings and prose are not."""
    write_tree(tmp_path, {
        "tests/test_a.py": (
            '"""Mentions sys.path.insert and PYTHONPATH in prose only."""\n'
            "from tests.handlers.conftest import World\n"
            "import conftest\n"
            "from test_b import helper\n"
            "from parley_testing.functions import load_function\n"
            "from . import sibling\n"),
        "benchmarks/bench.py": (
            "import os, subprocess, sys\n"
            "sys.path.insert(0, 'layers/common/python')\n"
            "def child():\n"
            "    subprocess.run([sys.executable, '-c', 'import sys; sys.path[:0] = [\"x\"]'])\n"
            "def env():\n"
            "    return dict(os.environ, PYTHONPATH='x')\n"
            "def env_key():\n"
            "    return {'PYTHONPATH': 'x', 'text': 'on the path'}\n"),
        "benchmarks/peers/.venv/lib/site.py": "sys.path.insert(0, 'x')\n",  # installed, not ours
        "parley_testing/paths.py": "from sys import path\nfrom .template import ROOT\n",
    })
    test_imports, path_edits = findings(tmp_path)
    assert test_imports == ["tests/test_a.py:2 tests.handlers.conftest", "tests/test_a.py:3 conftest", "tests/test_a.py:4 test_b",
                            "tests/test_a.py:6 ."]
    assert path_edits == {("benchmarks/bench.py", "<module>"), ("benchmarks/bench.py", "child"), ("benchmarks/bench.py", "env"),
                          ("benchmarks/bench.py", "env_key"), ("parley_testing/paths.py", "<module>")}
