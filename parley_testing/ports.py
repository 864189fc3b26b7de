"""Free 127.0.0.1 ports (`parley_local.ports.free_port`, the one definition) and whether one accepts connections."""

from __future__ import annotations

import socket

from parley_local.ports import free_port

__all__ = ["free_port", "port_accepts", "ipv6_loopback_available"]


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def ipv6_loopback_available() -> bool:
    """Whether `::1` can be bound here: a machine (or CI container) with IPv6 turned off skips the
    `--host ::1` tests rather than failing them."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False

