"""Where a webhook may point: an `https://` URL whose host resolves only to public addresses
(WEBHOOK_ALLOW_PRIVATE_TARGETS=true also allows `http://` and private, loopback, link-local …
addresses: tests, self-hosting).

Checked when a webhook is created or its URL changed, and again at every delivery, since DNS
can change (a name that does not resolve yet is accepted when saved, and refused by each
delivery until it resolves to public addresses): a delivery resolves the name once, checks
every address, and connects to the address it checked (`Target.address`), so a DNS answer that
changes between the check and the connection (a rebind) cannot reach a private address.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import ClassVar

import anyio
import httpx

from exceptions import AppError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Special-purpose ranges (RFC 6890 and later) that Python's `is_global` tables miss in some
# versions (3.11 lists only 192.0.0.0/29 of 192.0.0.0/24): refused whatever the version.
_NOT_PUBLIC = tuple(
    ipaddress.ip_network(net)
    for net in (
        "192.0.0.0/24", "100.64.0.0/10", "198.18.0.0/15", "2001::/23", "2001:db8::/32",
        "3fff::/20", "64:ff9b:1::/48", "100::/64", "5f00::/16",
    )
)  # fmt: skip


class UnsafeTargetError(AppError):
    """A webhook URL that is not https://, or whose host is (or resolves to) a non-public
    address: refused at create/PATCH (422) and at delivery (recorded on the delivery)."""

    status_code: ClassVar[int] = 422
    title: ClassVar[str] = "Webhook Target Refused"

    def __init__(self, reason: str) -> None:
        super().__init__(f"The webhook URL is refused: {reason}", field="url")
        self.reason = reason


class UnresolvedTargetError(UnsafeTargetError):
    """The URL's host does not resolve (now): a delivery fails with it; saving accepts it."""


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL and the address to connect to (its host as resolved and checked)."""

    url: httpx.URL
    address: IPAddress


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address leads to (mapped, 6to4, Teredo, NAT64): each must be public
    too, or `::ffff:127.0.0.1` would be a way to loopback."""
    found = [address.ipv4_mapped, address.sixtofour]
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [ip for ip in found if ip is not None]


def is_public(address: IPAddress) -> bool:
    """Whether an address is on the public internet: not private, loopback, link-local,
    multicast, reserved, unspecified or shared (CGNAT), nor an IPv6 form of such an address."""
    if (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or any(address in network for network in _NOT_PUBLIC)
    ):
        return False
    if isinstance(address, ipaddress.IPv6Address):
        return all(is_public(embedded) for embedded in _embedded_ipv4(address))
    return True


def parse_url(url: str, *, allow_private: bool) -> httpx.URL:
    """The URL, if its form is acceptable: https (or http when private targets are allowed),
    a host, no user name or password in it."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise UnsafeTargetError("it is not a valid URL") from exc
    schemes = ("https", "http") if allow_private else ("https",)
    if parsed.scheme not in schemes:
        raise UnsafeTargetError("it must start with https://")
    if not parsed.host:
        raise UnsafeTargetError("it has no host")
    if parsed.userinfo:
        raise UnsafeTargetError("it must not carry a user name or password")
    return parsed


async def resolve(url: httpx.URL) -> list[IPAddress]:
    """Every address the URL's host is (an IP literal) or resolves to, without blocking the
    event loop."""
    try:
        return [ipaddress.ip_address(url.host)]
    except ValueError:
        pass
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        answers = await anyio.getaddrinfo(url.host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        raise UnresolvedTargetError(f"its host {url.host} does not resolve") from exc
    addresses = [ipaddress.ip_address(str(answer[4][0]).split("%", 1)[0]) for answer in answers]
    if not addresses:
        raise UnresolvedTargetError(f"its host {url.host} does not resolve")
    return list(dict.fromkeys(addresses))


async def check_target(url: str, *, allow_private: bool) -> Target:
    """The URL checked, and the address to connect to; UnsafeTargetError if it is refused."""
    parsed = parse_url(url, allow_private=allow_private)
    addresses = await resolve(parsed)
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise UnsafeTargetError(
                    f"its host {parsed.host} is or resolves to {address}, which is not a public"
                    " address"
                )
    return Target(parsed, addresses[0])


async def check_url(url: str, *, allow_private: bool) -> None:
    """Create/PATCH: refuse a URL that may not be a target (UnsafeTargetError, 422). A host that
    does not resolve yet is accepted (DNS can change: each delivery resolves and checks it
    again), and with private targets allowed it is not resolved at all."""
    if allow_private:
        parse_url(url, allow_private=True)
        return
    try:
        await check_target(url, allow_private=False)
    except UnresolvedTargetError:
        return
