"""Flask-SocketIO peer of `parley dev` for benchmarks/peers_bench.py: the seed guide's handlers on gevent.

The guide's event table (message -> message_response, join_room -> user_joined + chat_history,
chat_message -> message_received to the room + chat_update to the sender) plus `ping` -> `pong`,
so that the driver sends each system the same frames. Rooms are Socket.IO rooms (in memory).
Run with this folder's own venv: `.venv/bin/python app.py PORT`.
"""

from __future__ import annotations

import sys
import time
import uuid
from datetime import datetime, timezone

from flask import Flask, request
from flask_socketio import SocketIO, emit, join_room

app = Flask(__name__)
# The guide's settings, with gevent instead of threading and the loggers off (a benchmark run).
socketio = SocketIO(app, cors_allowed_origins="*", async_mode="gevent", logger=False, engineio_logger=False,
                    ping_timeout=60, ping_interval=25)
members: dict[str, dict[str, str]] = {}  # room -> {sid: user}


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


@socketio.on("ping")
def on_ping(data: object = None) -> None:
    emit("pong", {"timestamp": now()})


@socketio.on("message")
def on_message(data: dict) -> None:
    emit("message_response", {"status": "received", "message": data.get("message"), "timestamp": now()})


@socketio.on("join_room")
def on_join_room(data: dict) -> None:
    room, sid = data["roomId"], request.sid
    people = members.setdefault(room, {})
    if sid not in people:
        emit("user_joined", {"roomId": room, "userId": f"user-{sid}", "timestamp": now()}, to=room)
        join_room(room)
        people[sid] = f"user-{sid}"
    emit("participants_list", {"roomId": room, "participants": [{"userId": u} for u in people.values()]})
    emit("chat_history", {"roomId": room, "messages": [], "hasMore": False})


@socketio.on("chat_message")
def on_chat_message(data: dict) -> None:
    room = data["roomId"]
    message_id = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
    emit("message_received", {"roomId": room, "messageId": message_id, "userId": f"user-{request.sid}",
                              "message": data.get("message"), "timestamp": now()}, to=room)
    emit("chat_update", {"roomId": room, "messageId": message_id, "status": "delivered",
                         "deliveredTo": len(members.get(room, {})) - 1})


@socketio.on("disconnect")
def on_disconnect(reason: object = None) -> None:
    for people in members.values():
        people.pop(request.sid, None)
    print(f"peer-disconnect {request.sid}", flush=True)


def serve(port: int) -> None:
    """What `socketio.run` does for gevent, on a listening socket with TCP_NODELAY (accepted sockets inherit it).

    Without it a reply of two frames (participants_list, chat_history) waits ~40 ms for the client's
    delayed ACK (Nagle), which would measure the kernel, not Flask-SocketIO.
    """
    from gevent import socket as gsocket
    from gevent.pywsgi import WSGIServer
    from geventwebsocket.handler import WebSocketHandler

    listener = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_STREAM)
    listener.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_REUSEADDR, 1)
    listener.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    server = WSGIServer(listener, app, handler_class=WebSocketHandler, log=None)
    print(f"peer ready on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
