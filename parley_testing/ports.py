"""Free 127.0.0.1 ports (`parley_local.ports.free_port`, the one definition) and whether one accepts connections."""

from __future__ import annotations

import socket

from parley_local.ports import free_port

__all__ = ["free_port", "port_accepts"]


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
