"""Which webhook URLs may be called: the one rule the API (at submit) and the worker (at delivery) both apply.

A URL must be http(s) and its host must resolve only to global unicast addresses, unless private destinations
are allowed. The worker then connects to an address checked here, never to a second resolution of the name.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IANA special-purpose ranges that never hold a webhook receiver on the internet. Listed explicitly, beside
# `is_global`, because what Python calls global changed between 3.11 and 3.13.
_V4_NOT_GLOBAL = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    )
)  # fmt: skip
_V6_NOT_GLOBAL = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/128", "::1/128", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "fc00::/7",
        "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip
# IPv6 forms that carry an IPv4 address in their low 32 bits (NAT64, deprecated IPv4-compatible): the embedded
# address decides, so ::127.0.0.1 or 64:ff9b::a00:1 cannot smuggle loopback or 10/8 past the IPv6 rules.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")


class WebhookTargetRefused(ValueError):
    """The URL is not http(s) (`address` None), or its host resolves to `address`, which is not a public one."""

    def __init__(self, message: str, address: IPAddress | None = None) -> None:
        super().__init__(message)
        self.address = address


class WebhookTargetUnresolved(OSError):
    """The host name does not resolve now (may be transient)."""


@dataclass(frozen=True)
class WebhookTarget:
    """A checked destination: connect to one of `addresses`, sending `host` as Host header and TLS name."""

    url: str
    scheme: str
    host: str  # the name from the URL (Host header, TLS SNI and certificate check)
    port: int
    addresses: tuple[IPAddress, ...]  # what the name resolved to when checked, in resolver order


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, IPv4-compatible, NAT64 or 6to4 IPv6 address, else None."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _V4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def not_global_reason(address: IPAddress) -> str | None:
    """Why `address` is not a public unicast address (a range name), or None when it is one."""
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = not_global_reason(inner)
        return f"{reason} (embedded in {address})" if reason else None
    networks = _V4_NOT_GLOBAL if isinstance(address, ipaddress.IPv4Address) else _V6_NOT_GLOBAL
    for network in networks:
        if address in network:
            return f"in the special-purpose range {network}"
    if address.is_multicast or not address.is_global:
        return "not a global unicast address"
    return None


def resolve_webhook_target(
    url: str, allow_private: bool, field: str = "webhook_url", switch: str = "ANIMEGAN_ALLOW_PRIVATE_WEBHOOKS"
) -> WebhookTarget:
    """Check `url` and resolve its host once; raise WebhookTargetRefused or WebhookTargetUnresolved.

    With allow_private (tests, trusted networks) every resolved address is accepted. `field` and `switch` name,
    in the errors, what the URL is (an input URL takes the same rule) and the setting that would allow it.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookTargetRefused(f"{field} {url!r} must be an absolute http:// or https:// URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise WebhookTargetRefused(f"{field} {url!r} has an invalid port ({exc})") from exc
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookTargetUnresolved(f"{field} host {parts.hostname!r} does not resolve ({exc})") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not allow_private:
        # Every answer must pass: a name that also resolves to 10.0.0.5 is refused, whichever one is tried first.
        for address in addresses:
            reason = not_global_reason(address)
            if reason is not None:
                raise WebhookTargetRefused(
                    f"{field} {url!r} resolves to {address}, {reason}: a private, loopback or reserved "
                    f"address; use a public host ({switch}=true only on a trusted network)",
                    address,
                )
    if not addresses:
        raise WebhookTargetUnresolved(f"{field} host {parts.hostname!r} resolved to no address")
    return WebhookTarget(url, parts.scheme, parts.hostname, port, tuple(addresses))
