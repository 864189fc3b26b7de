"""The project's own Python sources, parsed, for the structural tests (tests/test_layout.py and
tests/test_no_process_wide_patches.py): one walk, so that both skip the same installed code."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator


def parsed_sources(root: Path, folders: tuple[str, ...], skip: Path | None = None) -> Iterator[tuple[str, ast.Module]]:
    """(path relative to `root`, parsed module) for every .py file under `folders`, in order; not `skip` (a
    check that holds its forbidden forms as data), nor anything installed (dot folders, node_modules:
    e.g. the peers benchmark's own .venv and npm packages)."""
    for folder in folders:
        for source in sorted((root / folder).rglob("*.py")):
            if source == skip:
                continue
            relative = source.relative_to(root).as_posix()
            if any(part.startswith(".") or part == "node_modules" for part in Path(relative).parts):
                continue
            yield relative, ast.parse(source.read_text(encoding="utf-8"), relative)


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """A small source tree for a structural test's self-check: each relative path with its text."""
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
