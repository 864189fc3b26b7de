"""AWS's DynamoDB Local (a Java process) under a small supervisor, for the gateway's lifetime.

Run by `dynamodb_local.DynamoDBLocal` as `python -I dynamodb_local_main.py CONFIG_JSON` (executed
by path, like the Lambda workers and moto). Why a supervisor and not java directly: the gateway's
children leave when the gateway closes their stdin, even if the gateway was killed; a JVM cannot
watch its stdin, so this process does, and stops java then. Java runs in a session of its own,
so a terminal's Ctrl-C never reaches it: the gateway still needs the database while it runs
`$disconnect` for every open socket.

Protocol: one JSON line on stdout, `{"port": N, "pid": JAVA_PID}` once DynamoDB Local accepts
connections, or `{"error": TEXT}` if it exited first or did not answer in time; then the process
serves until its stdin reaches EOF (it then stops java and exits 0) or java exits (it writes
java's last output lines to stderr and exits 1). SIGINT and SIGTERM are ignored.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from parley_local.child_processes import ignore_stop_signals

START_TIMEOUT_S = 60.0
PR_SET_PDEATHSIG = 1


def _prepare_java() -> None:
    """In java, before exec: SIGTERM stops it again (this process ignores it, and exec would keep
    that), and on Linux it is killed if this supervisor is (it may be SIGKILLed)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    if sys.platform != "linux":
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def main() -> None:
    ignore_stop_signals()
    cfg = json.loads(sys.argv[1])
    tail: collections.deque[str] = collections.deque(maxlen=40)
    java = subprocess.Popen(
        cfg["command"], cwd=cfg["cwd"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True, preexec_fn=_prepare_java,
    )

    def read_output() -> None:
        assert java.stdout is not None
        for raw in java.stdout:
            tail.append(raw.decode("utf-8", "replace").rstrip())

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()

    def report(msg: dict[str, object]) -> None:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()

    deadline = time.monotonic() + START_TIMEOUT_S
    while not _accepts(cfg["port"]):
        if java.poll() is not None or time.monotonic() > deadline:
            if java.poll() is None:
                java.kill()
            java.wait()
            reader.join(2)
            report({"error": f"exit status {java.returncode}", "output": list(tail)})
            os._exit(1)
        time.sleep(0.05)
    report({"port": cfg["port"], "pid": java.pid})
    os.dup2(2, 1)  # anything printed later joins stderr; stdout was only for the ready line

    stopping = threading.Event()

    def watch_java() -> None:
        code = java.wait()
        if stopping.is_set():
            return
        reader.join(2)
        lines = "\n".join(f"[DynamoDB Local] {line}" for line in tail)
        sys.stderr.write(f"{lines}\n[DynamoDB Local] exited with status {code}\n")
        sys.stderr.flush()
        os._exit(1)

    threading.Thread(target=watch_java, daemon=True).start()
    try:
        while sys.stdin.buffer.read(65536):
            pass
    finally:
        stopping.set()
        if java.poll() is None:
            java.terminate()  # DynamoDB Local flushes -dbPath data on a normal JVM shutdown
            try:
                java.wait(10)
            except subprocess.TimeoutExpired:
                java.kill()
        os._exit(0)


if __name__ == "__main__":
    main()
