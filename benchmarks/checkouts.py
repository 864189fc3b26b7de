"""Measuring several checkouts of Parley side by side: each runs a child in its own interpreter and layer.

Why a child per checkout and round: a checkout's code can only be imported once per process, and rounds
taken in turn put every checkout on the same machine (these machines are noisy). The child is given as
code to run with the checkout as its working folder, so it imports that checkout's `parley_testing`
(and through it the layer), as its own tests do, without editing any import path.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def add_repo_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", type=Path, action="append", help="a checkout (repeatable); the last is the baseline")


def chosen_repos(args: argparse.Namespace) -> list[Path]:
    return [r.resolve() for r in (args.repo or [REPO])]


def in_turn(repos: list[Path], round_number: int) -> list[Path]:
    """The checkouts in the order round `round_number` (from 1) runs them: as given, then reversed, in turn.

    Why: the checkout that runs first in a round pays for it. Two identical trees, one after the other,
    read about 5% apart in CPU per handshake (a control run, docs/benchmarks.md), and on 2026-11-30 one
    tree read 1.07x another's round trip when listed first and 0.89x when listed second; with the order
    turned each round, an even number of rounds puts each checkout first equally often."""
    return list(repos) if round_number % 2 else list(reversed(repos))


def run_in(repo: Path, child: str, *args: str, stdin: str | None = None, env: dict[str, str] | None = None,
           timeout: float = 300) -> Any:
    """Run `child` (Python code) in `repo`'s interpreter (its .venv, else this one), in `repo`; its one line of JSON."""
    python = repo / ".venv" / "bin" / "python"
    done = subprocess.run([str(python if python.exists() else sys.executable), "-c", child, *args], input=stdin,
                          cwd=repo, env=env, capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(done.stdout)
