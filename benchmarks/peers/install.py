"""Install the peers `benchmarks/peers_bench.py` compares `parley dev` with, each in its own folder.

Why their own folders: serverless-offline brings ~400 npm packages and Flask-SocketIO pins its own
Werkzeug/Flask; neither may move the project's `.venv` or `client/node_modules`. Both folders are
git-ignored (`node_modules/`, `.venv/`); the pins are `serverless_offline/package-lock.json` and
`flask_socketio/requirements.txt`.

    .venv/bin/python benchmarks/peers/install.py          # installs what is missing, prints what is usable

A peer that cannot be installed (no npm, no network) is reported with the reason, and the
benchmark measures the others.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SLS_DIR = HERE / "serverless_offline"
FLASK_DIR = HERE / "flask_socketio"
SLS_BIN = SLS_DIR / "node_modules" / ".bin" / "serverless"
FLASK_PY = FLASK_DIR / ".venv" / "bin" / "python"
INSTALL_TIMEOUT_S = 900


@dataclass
class Peer:
    name: str
    ready: bool
    reason: str = ""


def _run(cmd: list[str], cwd: Path) -> str:
    """Run an installer step; returns "" on success, else the last lines of its output."""
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{' '.join(cmd[:3])}: {exc}"
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        return f"{' '.join(cmd[:3])} exited {done.returncode}: {' / '.join(tail)}"
    return ""


def serverless_offline() -> Peer:
    name = "serverless-offline"
    if SLS_BIN.exists():
        return Peer(name, True)
    if shutil.which("npm") is None:
        return Peer(name, False, "npm is not installed")
    error = _run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], SLS_DIR)
    return Peer(name, not error and SLS_BIN.exists(), error or "")


def flask_socketio() -> Peer:
    name = "Flask-SocketIO"
    marker = FLASK_DIR / ".venv" / ".installed"
    if marker.exists():
        return Peer(name, True)
    error = _run([sys.executable, "-m", "venv", str(FLASK_DIR / ".venv")], FLASK_DIR)
    error = error or _run([str(FLASK_PY), "-m", "pip", "install", "-q", "-r", "requirements.txt"], FLASK_DIR)
    if not error:
        marker.touch()
    return Peer(name, not error, error)


def install_all() -> dict[str, Peer]:
    return {p.name: p for p in (serverless_offline(), flask_socketio())}


if __name__ == "__main__":
    for peer in install_all().values():
        print(f"{peer.name}: {'ready' if peer.ready else 'NOT installed: ' + peer.reason}")
