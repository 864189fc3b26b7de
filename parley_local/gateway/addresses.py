"""The host `--host` names, as URLs, Origins and people need it: bracketed when IPv6, and whether it is this machine only.

Why one module: the gateway's own URLs, the Origin allow-list for local pages and the banner's warning
about who can reach the port all read the same `--host`; each reading it its own way is how
`http://::1:*` (no browser ever sends that Origin) came about.
"""

from __future__ import annotations

import ipaddress

ANY_INTERFACE = ("0.0.0.0", "::", "")  # every interface, so other machines too


def host_in_url(host: str) -> str:
    """A host as a URL (and a browser's Origin) writes it: an IPv6 address in brackets (`[::1]`)."""
    return f"[{host}]" if ":" in host else host


def is_loopback(host: str) -> bool:
    """True when only this machine can reach a port bound to `host` (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # any other name may resolve to an address others reach
        return False
