"""An execution environment's process, spawned by the standard library rather than the event loop.

Why: the environments ignore Ctrl-C (the gateway still needs them to run `$disconnect` for every open
socket), and a terminal's Ctrl-C reaches the whole process group, so they are spawned with SIGINT and
SIGTERM blocked (`child_processes.stop_signals_blocked`) until they ignore both. uvloop's spawner
(libuv's `uv_spawn`) empties the child's signal mask and resets its handlers before exec, so under
uvloop the block protected nothing: a Ctrl-C while an environment's interpreter started killed it
(a KeyboardInterrupt in its first imports), the pool took that for a failed init, and every later
invocation of the function got Runtime.ExitError, the stopping gateway's `$disconnect`s included.
`subprocess.Popen` forks and execs with the mask kept. The loop learns of the exit from a pidfd
(Linux), or else from a thread that waits for it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading

from ..child_processes import stop_signals_blocked


class _Stdin:
    """The environment's request pipe, as `asyncio.subprocess.Process.stdin` offers it: a transport to write to."""

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self.transport = transport

    def close(self) -> None:
        self.transport.close()


class EnvironmentProcess:
    """The parts of `asyncio.subprocess.Process` the pool uses: `pid`, `returncode`, `stdin`, `wait()`, `kill()`."""

    def __init__(self, popen: subprocess.Popen[bytes], stdin: asyncio.WriteTransport, loop: asyncio.AbstractEventLoop) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.stdin = _Stdin(stdin)
        self.returncode: int | None = None
        self._loop = loop
        self._exit: asyncio.Future[int] = loop.create_future()
        self._watch_exit()

    @classmethod
    async def spawn(cls, args: list[str], *, stdout: int, stderr: int, pass_fds: tuple[int, ...], env: dict[str, str],
                    cwd: str | None) -> "EnvironmentProcess":
        loop = asyncio.get_running_loop()
        with stop_signals_blocked():
            popen = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=stdout, stderr=stderr, pass_fds=pass_fds, env=env, cwd=cwd)
        try:
            assert popen.stdin is not None
            transport, _ = await loop.connect_write_pipe(asyncio.Protocol, popen.stdin)
        except BaseException:
            popen.kill()
            popen.wait()
            raise
        return cls(popen, transport, loop)  # type: ignore[arg-type]

    def _watch_exit(self) -> None:
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfd (not Linux, or before 5.3): a thread waits instead
            threading.Thread(target=self._wait_in_thread, name=f"environment-{self.pid}", daemon=True).start()
            return

        def readable() -> None:
            self._loop.remove_reader(pidfd)
            os.close(pidfd)
            self._exited(self._popen.wait())

        self._loop.add_reader(pidfd, readable)

    def _wait_in_thread(self) -> None:
        code = self._popen.wait()
        try:
            self._loop.call_soon_threadsafe(self._exited, code)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    def _exited(self, code: int) -> None:
        self.returncode = code
        if not self._exit.done():
            self._exit.set_result(code)

    async def wait(self) -> int:
        """The exit status, once the process has exited (a waiter's cancellation leaves it to the others)."""
        return await asyncio.shield(self._exit)

    def kill(self) -> None:
        if self.returncode is None:
            self._popen.kill()  # a no-op for a process already reaped

    def __repr__(self) -> str:
        return f"EnvironmentProcess(pid={self.pid}, returncode={self.returncode})"
