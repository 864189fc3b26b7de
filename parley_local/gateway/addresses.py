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


def is_loopback_address(address: str | None) -> bool:
    """Whether an IP address (a peer's `request.remote`, a `--host`) is this machine: 127.0.0.0/8,
    ::1, or an IPv4-mapped one of those. A name, or no address, is not known to be."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def is_loopback(host: str) -> bool:
    """True when only this machine can reach a port bound to `host` (127.0.0.0/8, ::1, localhost);
    any other name may resolve to an address others reach."""
    return host == "localhost" or is_loopback_address(host)
