"""moto's standalone server as a child process on a free 127.0.0.1 port: a DynamoDB (and SSM, ...)
that outlives the gateways a test restarts, or that a benchmark reaches over HTTP as on AWS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .ports import free_port, port_accepts
from .waiting import wait_for


class MotoServer:
    """`moto_server -H 127.0.0.1 -p PORT`; its output goes to `log` (or nowhere)."""

    def __init__(self, log: Path | None = None):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> "MotoServer":
        exe = Path(sys.executable).with_name("moto_server")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
        out = open(self.log, "wb") if self.log else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(self.port)], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            if self.log:
                out.close()  # type: ignore[union-attr]

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-3000:] if self.log else ""
                raise RuntimeError(f"moto_server exited with {self.proc.returncode}\n{tail}")
            return port_accepts(self.port)

        wait_for(up, timeout, 0.1, what="moto_server to listen")
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
