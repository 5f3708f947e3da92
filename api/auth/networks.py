"""Networks a user has logged in from: a keyed digest per network, never an address.

A network is the client address's /24 (IPv4) or /48 (IPv6): home and mobile providers move a
client's address within one, and an attacker's addresses are elsewhere. (Rate limits count a
client by a narrower key, `client_networks`: the IPv4 address, the IPv6 /64, its /48.) Its
digest is an HMAC
keyed by a key derived from the password pepper, so the user document holds no address and the
digests mean nothing without the secret. The login flow uses them to let a user's own network
through when strangers have used up the account's failure ceiling.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from datetime import datetime, timedelta
from typing import Any

REMEMBERED = 20  # networks kept per user, most recent first
REFRESH_AFTER = timedelta(days=1)  # a known network's "last seen" is rewritten at most daily
FORGET_AFTER = timedelta(days=90)  # not seen for this long: a new network again


def network_of(ip: str) -> str:
    """Return the network an address belongs to, as text ("203.0.113.0/24")."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip  # not an address (a unix socket peer): itself
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def client_networks(ip: str) -> tuple[str, str | None]:
    """Return the networks a client's attempts are counted under: an IPv4 address itself, an
    IPv6 address's /64 (one subscriber's whole allocation: rotating through it gains nothing)
    and, watched with a wider budget, its /48 (None for IPv4)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip, None  # not an address (a unix socket peer): itself
    if address.version == 4:
        return str(address), None
    mapped = address.ipv4_mapped
    if mapped is not None:
        return str(mapped), None
    narrow = ipaddress.ip_network(f"{address}/64", strict=False)
    wide = ipaddress.ip_network(f"{address}/48", strict=False)
    return str(narrow), str(wide)


def network_digest(pepper: bytes, ip: str) -> str:
    """Return the keyed digest under which the address's network is remembered."""
    key = hmac.new(pepper, b"jobauth known networks", hashlib.sha256).digest()
    return hmac.new(key, network_of(ip).encode(), hashlib.sha256).hexdigest()[:32]


def last_seen(user: dict[str, Any], digest: str) -> datetime | None:
    """Return when the user last logged in from the network, or None."""
    for entry in user.get("known_networks", ()):
        if entry.get("net") == digest:
            seen: datetime = entry["seen"]
            return seen
    return None


def is_known(user: dict[str, Any], digest: str, now: datetime) -> bool:
    """Return True if the user logged in from the network within FORGET_AFTER."""
    seen = last_seen(user, digest)
    return seen is not None and now - seen < FORGET_AFTER
