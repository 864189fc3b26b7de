"""`parley test-connection [URL] [--token T] [--user U]`: check a Parley stack end to end.

The seed guide's test_websocket_connection.py, made into a real check. It
connects (by default to the local gateway, ws://127.0.0.1:3001/local) and runs
the protocol's main round trips, printing PASS or FAIL for each step:

    connect
    message      -> message_response
    ping         -> pong
    join_room    -> participants_list and chat_history
    chat_message -> message_received and chat_update
    leave_room   (then get_history there is refused with not_a_member)

The exit status is 0 when every step passed, 1 when a step failed and 2 when
it could not connect at all (refused token, nothing listening, ...).

Token: `--token`; otherwise, for a local URL, one from the gateway's
`/dev/token`; otherwise one signed with the dev secret (`tokens.make_token`:
`PARLEY_JWT_SECRET`, default `parley-dev-secret-not-for-production`). A
deployed stack needs `--token`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
import urllib.request
import uuid
from typing import Any, Callable

from .tokens import make_token

DEFAULT_URL = "ws://127.0.0.1:3001/local"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NO_CONNECTION = 2


class StepFailed(Exception):
    pass


def _is_local(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    return host in LOCAL_HOSTS


def fetch_dev_token(ws_url: str, user: str, name: str | None = None, timeout: float = 5.0) -> str:
    parts = urllib.parse.urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    query = urllib.parse.urlencode({"user": user, "name": name or user})
    url = f"{scheme}://{parts.netloc}/dev/token?{query}"
    with urllib.request.urlopen(url, timeout=timeout) as res:  # noqa: S310 (local dev URL)
        body = json.loads(res.read().decode("utf-8"))
    token = body.get("token")
    if not isinstance(token, str) or not token:
        raise ValueError("/dev/token returned no token")
    return token


def _with_token(url: str, token: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}token={urllib.parse.quote(token, safe='')}"


class Checker:
    def __init__(self, ws: Any, timeout: float, out: Callable[[str], None]):
        self.ws = ws
        self.timeout = timeout
        self.out = out
        self.passed = 0
        self.failed = 0

    def send(self, type_: str, data: dict[str, Any]) -> None:
        self.ws.send(json.dumps({"type": type_, "data": data}))

    def expect(
        self, want: dict[str, Callable[[dict[str, Any]], bool]], *, fail_on_error: bool = True, any_of: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Read frames until one matching each wanted type (or, with any_of, one of them) arrived."""
        found: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + self.timeout
        while len(found) < (1 if any_of else len(want)):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = ", ".join(t for t in want if t not in found)
                raise StepFailed(f"no {missing} within {self.timeout:g} s")
            try:
                raw = self.ws.recv(timeout=left)
            except TimeoutError:
                continue
            if not isinstance(raw, str):
                raise StepFailed("received a binary frame")
            try:
                frame = json.loads(raw)
            except ValueError:
                raise StepFailed(f"received a frame that is not JSON: {raw[:200]!r}") from None
            type_ = frame.get("type")
            data = frame.get("data") or {}
            if type_ == "error" and fail_on_error and "error" not in want:
                raise StepFailed(f"server error {data.get('code')}: {data.get('message')}")
            check = want.get(type_)
            if check is not None and type_ not in found and check(data):
                found[type_] = data
        return found

    def step(self, name: str, fn: Callable[[], str]) -> bool:
        started = time.monotonic()
        try:
            detail = fn()
        except StepFailed as err:
            self.failed += 1
            self.out(f"FAIL  {name}: {err}")
            return False
        except Exception as err:  # a closed socket and the like
            self.failed += 1
            self.out(f"FAIL  {name}: {type(err).__name__}: {err}")
            return False
        self.passed += 1
        ms = (time.monotonic() - started) * 1000
        self.out(f"PASS  {name} ({ms:.0f} ms){': ' + detail if detail else ''}")
        return True


def run(url: str, token: str, user_hint: str | None, room: str, timeout: float, out: Callable[[str], None]) -> int:
    from websockets.exceptions import InvalidHandshake, InvalidStatus
    from websockets.sync.client import connect

    out(f"connecting to {url}")
    started = time.monotonic()
    try:
        ws = connect(_with_token(url, token), open_timeout=timeout, close_timeout=2, max_size=2**20)
    except InvalidStatus as err:
        status = err.response.status_code
        if status == 401:
            reason = "HTTP 401: the token was refused (bad signature, expired, or missing `sub`/`exp`)"
        elif status == 403:
            reason = "HTTP 403: refused (Origin not allowed, or the API denies this caller)"
        else:
            reason = f"HTTP {status} instead of a WebSocket upgrade (is the stage in the URL right?)"
        out(f"FAIL  connect: {reason}")
        return EXIT_NO_CONNECTION
    except TimeoutError:
        out(f"FAIL  connect: no handshake answer from {url} within {timeout:g} s")
        return EXIT_NO_CONNECTION
    except (OSError, InvalidHandshake) as err:
        out(f"FAIL  connect: cannot connect to {url}: {type(err).__name__}: {err}")
        if _is_local(url):
            out("      is the local gateway running? start it with `parley dev`")
        return EXIT_NO_CONNECTION
    out(f"PASS  connect ({(time.monotonic() - started) * 1000:.0f} ms)")

    with ws as conn:  # (websockets >= 17 wants the context manager form)
        return _steps(conn, user_hint, room, timeout, out)


def _steps(ws: Any, user_hint: str | None, room: str, timeout: float, out: Callable[[str], None]) -> int:
    checker = Checker(ws, timeout, out)
    checker.passed = 1
    cmid = f"tc-{uuid.uuid4().hex[:16]}"
    text = f"test-connection {time.strftime('%H:%M:%S')}"

    def s_message() -> str:
        probe = {"probe": uuid.uuid4().hex[:8]}
        checker.send("message", {"message": probe})
        got = checker.expect({"message_response": lambda d: d.get("message") == probe})["message_response"]
        if got.get("status") != "received":
            raise StepFailed(f"status {got.get('status')!r}, expected 'received'")
        return f"status={got.get('status')}"

    def s_ping() -> str:
        checker.send("ping", {})
        got = checker.expect({"pong": lambda d: True})["pong"]
        return f"timestamp={got.get('timestamp')}"

    def s_join() -> str:
        checker.send("join_room", {"roomId": room})
        got = checker.expect(
            {
                "participants_list": lambda d: d.get("roomId") == room,
                "chat_history": lambda d: d.get("roomId") == room,
            }
        )
        people = got["participants_list"].get("participants") or []
        ids = [p.get("userId") for p in people]
        if user_hint and user_hint not in ids:
            raise StepFailed(f"participants_list {ids} lacks {user_hint!r}")
        return f"room={room} participants={ids} history={len(got['chat_history'].get('messages') or [])}"

    def s_chat() -> str:
        checker.send("chat_message", {"roomId": room, "message": text, "clientMessageId": cmid})
        got = checker.expect(
            {
                "message_received": lambda d: d.get("clientMessageId") == cmid or (d.get("roomId") == room and d.get("message") == text),
                "chat_update": lambda d: d.get("roomId") == room and d.get("status") == "delivered",
            }
        )
        m = got["message_received"]
        if m.get("message") != text:
            raise StepFailed(f"message_received carries {m.get('message')!r}, expected {text!r}")
        upd = got["chat_update"]
        if upd.get("messageId") != m.get("messageId"):
            raise StepFailed(f"chat_update is for {upd.get('messageId')}, the message is {m.get('messageId')}")
        return f"messageId={m.get('messageId')} deliveredTo={upd.get('deliveredTo')}"

    def s_leave() -> str:
        checker.send("leave_room", {"roomId": room})
        # leave_room has no reply, and API Gateway may run the next frame's
        # Lambda before this one finishes: poll with get_history (members
        # only, no side effects) until it is refused with not_a_member.
        deadline = time.monotonic() + timeout
        polls = 0
        while True:
            polls += 1
            checker.send("get_history", {"roomId": room, "limit": 1})
            got = checker.expect(
                {"error": lambda d: d.get("requestType") in (None, "get_history"), "chat_history": lambda d: d.get("roomId") == room},
                any_of=True,
            )
            if "error" in got:
                code = got["error"].get("code")
                if code != "not_a_member":
                    raise StepFailed(f"after leaving, get_history got error {code!r}, expected 'not_a_member'")
                return f"get_history there is refused with not_a_member (poll {polls})"
            if time.monotonic() >= deadline:
                raise StepFailed(f"still a member {timeout:g} s after leave_room")
            time.sleep(0.1)

    checker.step("message -> message_response", s_message)
    checker.step("ping -> pong", s_ping)
    if checker.step("join_room -> participants_list, chat_history", s_join):
        checker.step("chat_message -> message_received, chat_update", s_chat)
        checker.step("leave_room", s_leave)
    else:
        checker.failed += 2
        out("FAIL  chat_message -> message_received, chat_update: skipped (join_room failed)")
        out("FAIL  leave_room: skipped (join_room failed)")
    out(f"test-connection: {checker.passed} passed, {checker.failed} failed")
    return EXIT_OK if checker.failed == 0 else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="parley test-connection",
        description="Check a Parley WebSocket API end to end (local gateway by default).",
    )
    p.add_argument("url", nargs="?", default=DEFAULT_URL, help=f"WebSocket URL with the stage (default {DEFAULT_URL})")
    p.add_argument("--token", help="JWT to connect with (required for a deployed stack)")
    p.add_argument("--user", default="test-connection", help="user id for a dev token (default test-connection)")
    p.add_argument("--name", help="display name for a dev token (default: the user id)")
    p.add_argument("--room", help="room to use (default: a fresh test-connection-<random> room)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each step (default 10)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = lambda line: print(line, flush=True)  # noqa: E731
    url = args.url
    if not url.startswith(("ws://", "wss://")):
        out(f"FAIL  connect: {url!r} is not a ws:// or wss:// URL")
        return EXIT_NO_CONNECTION
    token = args.token
    user_hint = None
    if not token:
        user_hint = args.user
        if _is_local(url):
            try:
                token = fetch_dev_token(url, args.user, args.name, timeout=min(args.timeout, 5.0))
                out(f"token: dev token for {args.user!r} from the local gateway")
            except Exception:  # noqa: BLE001 (gateway without /dev/token, or down: sign one)
                token = None
        if not token:
            try:
                token = make_token(args.user, args.name, ttl_s=3600)
            except ValueError as err:
                out(f"FAIL  connect: --user: {err}")
                return EXIT_NO_CONNECTION
            out(f"token: signed for {args.user!r} with the dev secret (PARLEY_JWT_SECRET)")
    room = args.room or f"test-connection-{uuid.uuid4().hex[:8]}"
    try:
        return run(url, token, user_hint, room, args.timeout, out)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
