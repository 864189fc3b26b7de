"""Write layers/common/python/requirements.txt: the shared layer's whole dependency closure, pinned.

Usage: .venv/bin/python security/lock_layer.py   (or `make lock-layer`)

Why pip and not a lock tool: pip alone can resolve for another platform (`--platform`,
`--only-binary`) and describe what it chose (`--dry-run --report`), so the lock needs nothing new.
The closure is resolved for the Lambda target, not for this machine, so a binary package
(cryptography, cffi, pydantic-core, wrapt) only gets pinned at a version that has a manylinux2014
aarch64 wheel for CPython 3.13 (or abi3): a missing wheel fails here, not in `sam build`.
Every resolution takes the newest release the constraints allow, because only a project's newest
release can be audited through PyPI's project JSON (see audit_dependencies.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS_IN = ROOT / "security" / "layer-requirements.in"
LOCK = ROOT / "layers" / "common" / "python" / "requirements.txt"
# The Lambda functions' runtime and architecture (template.yaml: python3.13, arm64).
TARGET = ["--platform", "manylinux2014_aarch64", "--python-version", "3.13",
          "--implementation", "cp", "--only-binary=:all:"]
TARGET_MACHINE = "aarch64"
PIP_TIMEOUT_S = 300

HEADER = """\
# The shared `parley` layer's runtime dependencies: the whole closure, every package pinned with ==,
# resolved for the Lambda target (Linux arm64, CPython 3.13, manylinux2014 wheels only).
# SAM pip-installs this file into the layer, `make setup` installs it into .venv for the tests, and
# `make security` audits exactly these versions (security/audit_dependencies.py).
# Written by `make lock-layer` (security/lock_layer.py) from security/layer-requirements.in:
# change that file and re-run it; do not edit this one by hand.
"""

Item = dict[str, Any]


class LockError(Exception):
    """The lock cannot be written; the message says what to change."""


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=PIP_TIMEOUT_S, check=False)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def resolve(requirements_in: Path) -> tuple[list[Item], dict[str, str]]:
    """Resolve for the Lambda target; return pip's report items and the marker environment it used."""
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        result = _pip("install", "--dry-run", "--ignore-installed", "--quiet", "--report",
                      str(report_path), *TARGET, "-r", str(requirements_in))
        if result.returncode != 0:
            raise LockError(f"pip could not resolve {requirements_in} for Linux arm64 / CPython 3.13:\n"
                            f"{_tail(result.stderr)}\n"
                            "Loosen or change the pins it names in that file, then re-run.")
        report = json.loads(report_path.read_text())
    return report["install"], report["environment"]


def _requires(item: Item, environment: dict[str, str]) -> set[str]:
    """Names this item pulls in, with the extras it was asked for, under `environment`."""
    names: set[str] = set()
    for extra in ["", *item.get("requested_extras", [])]:
        for line in item["metadata"].get("requires_dist") or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({**environment, "extra": extra}):
                names.add(canonicalize_name(requirement.name))
    return names


def check_markers_match_target(items: list[Item], host: dict[str, str]) -> None:
    """pip evaluates markers for this machine even with --platform: refuse a closure that would differ on arm64."""
    target = {**host, "platform_machine": TARGET_MACHINE}
    for item in items:
        if _requires(item, host) != _requires(item, target):
            raise LockError(f"{item['metadata']['name']} depends on the machine architecture "
                            "(a platform_machine marker): run `make lock-layer` on an arm64 Linux machine.")


def render(items: list[Item], environment: dict[str, str]) -> str:
    """The lock text: one `name[extras]==version` line per package, sorted, with what pulled it in."""
    by_name = {canonicalize_name(item["metadata"]["name"]): item for item in items}
    via: defaultdict[str, set[str]] = defaultdict(set)
    for parent, item in by_name.items():
        for child in _requires(item, environment) & by_name.keys():
            via[child].add(parent)
        if item.get("requested"):
            via[parent].add(REQUIREMENTS_IN.relative_to(ROOT).as_posix())
    lines = [HEADER.rstrip("\n")]
    for name in sorted(by_name):
        item = by_name[name]
        extras = sorted(item.get("requested_extras", []))
        suffix = f"[{','.join(extras)}]" if extras else ""
        lines.append(f"{name}{suffix}=={item['metadata']['version']}")
        lines.append(f"    # via {', '.join(sorted(via[name]))}")
    return "\n".join(lines) + "\n"


def check_installs_with_dev_tools(lock_text: str) -> None:
    """`make setup` installs the lock into .venv next to the dev tools: fail before writing if they clash."""
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / "requirements.txt"
        candidate.write_text(lock_text)
        result = _pip("install", "--dry-run", "--quiet", "-e", f"{ROOT}[dev]", "-r", str(candidate))
    if result.returncode != 0:
        raise LockError("the new lock does not install next to the dev tools (what `make setup` does):\n"
                        f"{_tail(result.stderr)}\n"
                        f"Constrain the package pip names in {REQUIREMENTS_IN.relative_to(ROOT)} to the "
                        "range the dev tool requires, with a comment saying which tool, then re-run.")


def main() -> int:
    try:
        items, environment = resolve(REQUIREMENTS_IN)
        check_markers_match_target(items, environment)
        lock_text = render(items, environment)
        check_installs_with_dev_tools(lock_text)
    except LockError as error:
        print(f"lock-layer: {error}", file=sys.stderr)
        return 1
    LOCK.write_text(lock_text)
    print(f"lock-layer: wrote {len(items)} pins to {LOCK.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
