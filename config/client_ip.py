"""The client's address, for the admin's login lockout (django-axes' AXES_CLIENT_IP_CALLABLE).

Behind a proxy, REMOTE_ADDR is the proxy. X-Forwarded-For is believed only when REMOTE_ADDR is one of
TRUSTED_PROXIES, and then read from the right: each trusted proxy appends the address it was called
from (nginx's `$proxy_add_x_forwarded_for`), so the first address from the right that is not a
trusted proxy is the client. Anything left of it was written by the client and is ignored, so a
client cannot pick the address it is locked out under.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in proxies if p.strip())


def _trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _networks(tuple(settings.TRUSTED_PROXIES)))


def client_ip(request: HttpRequest) -> str:
    remote = request.META.get("REMOTE_ADDR", "")
    if not _trusted(remote):
        return remote
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return remote  # not an address a trusted proxy wrote: nothing further left is believed
        if not _trusted(hop):
            return hop
    return hops[0] if hops else remote
