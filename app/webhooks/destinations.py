"""Where a webhook may send: URL checks, bounded DNS resolution and the private-address guard.

A webhook's URL is chosen by whoever creates it, so without care Runway would POST to its own
Postgres, to a cloud metadata service or to anything else on its network (server-side request
forgery). The URL is checked when the webhook is created; at delivery the host is resolved
again, every address must be public, and the request is pinned to the address that was checked
so that a second, different DNS answer cannot redirect it (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from app.errors import InvalidInput

MAX_URL_LENGTH = 2048

Address = IPv4Address | IPv6Address

_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
# Every URL check below, as one pattern (the API's schema states it): http or https, a host
# name or IPv4 address, an optional port, then printable ASCII without `#` (percent-encode
# the rest). IPv6 literals are not taken: give such a host a DNS name.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
# A DNS name whose last label has a letter (resolvers read all-digit names as IPv4 numbers
# in other notations: `2130706433` is 127.0.0.1), or an IPv4 address in dotted quads.
# The last label is not a hexadecimal number either (`0x7f000001` is 127.0.0.1 too).
_HOST = (
    r"(?:(?:[A-Za-z0-9_-]+\.)*(?!0[xX][0-9A-Fa-f]*\.?(?:[:/?]|$))"
    r"[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*\.?"
    rf"|{_OCTET}(?:\.{_OCTET}){{3}})"
)
# Printable ASCII but `#`, written so that ECMAScript regexes (JSON Schema's) read it alike.
_REST = '(?:[/?][!"$-~]*)?'
URL_PATTERN = rf"^[hH][tT][tT][pP][sS]?://{_HOST}(?::{_PORT})?{_REST}$"
_URL = re.compile(URL_PATTERN)
_UNMATCHED = (
    "must have a host name (its last label with a letter) or an IPv4 address in dotted "
    "quads, not an IPv6 one, and only printable ASCII (percent-encode other characters)"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(r"[a-z0-9._-]+")
_NAT64 = IPv6Network("64:ff9b::/96")
_SHARED_SPACE = IPv4Network("100.64.0.0/10")

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


class Refused(Exception):
    """A destination that may not be used; `reason` says why, for people."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _url_problem(url: str) -> str | None:
    """What is wrong with the text of `url` before it is even split, if anything."""
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters"
    # urlsplit silently drops tabs and newlines, so they are looked for in the raw text.
    if any(char.isspace() or not char.isprintable() for char in url):
        return "must not contain spaces or control characters"
    if "#" in url:
        return "must not have a fragment (fragments are never sent)"
    return None


def _split(url: str) -> SplitResult | str:
    """`url` split, or what is wrong with it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "must be a valid URL with a port between 1 and 65535"
    if parts.scheme.lower() not in _DEFAULT_PORTS:
        return "must be an http or https URL"
    if "@" in parts.netloc:
        return "must not contain credentials"
    if port == 0:
        return "must have a port between 1 and 65535"
    return parts


def _host_problem(host: str | None) -> str | None:
    if not host:
        return "must have a host"
    if not host.isascii():
        return "must have an ASCII host (write international names in their xn-- form)"
    if ":" in host:  # only an IPv6 literal has colons, and urlsplit checked its brackets
        return None
    if not _HOST_NAME.fullmatch(host) or ".." in host or host.startswith("."):
        return "must have a valid host name"
    return None


def check_url(url: str, field: str = "url") -> SplitResult:
    """`url` split, when it is an acceptable webhook URL; raises InvalidInput otherwise."""
    problem = _url_problem(url)
    if problem is not None:
        raise InvalidInput(field, problem)
    parts = _split(url)
    if isinstance(parts, str):
        raise InvalidInput(field, parts)
    problem = _host_problem(parts.hostname)
    if problem is not None:
        raise InvalidInput(field, problem)
    if not _URL.fullmatch(url):
        raise InvalidInput(field, _UNMATCHED)
    return parts


def _pool() -> ThreadPoolExecutor:
    global _executor  # noqa: PLW0603 - created on first use, then shared
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="webhook-dns")
        return _executor


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def resolve(host: str, port: int, *, timeout: float | None = 2.0) -> list[Address]:
    """The addresses of `host`, unique, in the resolver's order; at most `timeout` seconds
    (None: as long as the system's resolver takes, in the calling thread)."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    future = None
    try:
        if timeout is None:
            infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        else:  # getaddrinfo cannot be interrupted: a worker runs it, abandoned on timeout
            future = _pool().submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
            infos = future.result(timeout=timeout)
    except TimeoutError:
        if future is not None:
            future.cancel()
        raise Refused(f"cannot resolve {host}: no answer within {timeout:g} s") from None
    except (OSError, UnicodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise Refused(f"cannot resolve {host}: {detail}") from None
    found = [
        ipaddress.ip_address(info[4][0])
        for info in infos
        if info[0] in (socket.AF_INET, socket.AF_INET6)
    ]
    if not found:
        raise Refused(f"cannot resolve {host}: no addresses")
    return list(dict.fromkeys(found))


def _embedded(address: IPv6Address) -> list[IPv4Address]:
    """The IPv4 addresses an IPv6 address stands for (mapped, NAT64, 6to4, Teredo)."""
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in _NAT64:
        return [IPv4Address(int(address) & 0xFFFFFFFF)]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)
    return []


def _is_public_v6(address: IPv6Address) -> bool:
    embedded = _embedded(address)
    if embedded and not all(is_public(inner) for inner in embedded):
        return False
    if address.ipv4_mapped is not None or address in _NAT64:
        return True  # these reach the IPv4 address itself, judged above
    # is_global misses the deprecated site-local range and the rest of ::/8.
    return address.is_global and not (address.is_site_local or address.is_reserved)


def is_public(address: Address) -> bool:
    """Whether `address` is a globally routable unicast address (not private, loopback...)."""
    if address.is_multicast or address.is_unspecified:
        return False
    if isinstance(address, IPv6Address):
        return _is_public_v6(address)
    return address.is_global and not address.is_reserved and address not in _SHARED_SPACE


def public_addresses(
    host: str, port: int, *, allow_private: bool, timeout: float | None = 2.0
) -> list[Address]:
    """The addresses of `host`; unless `allow_private`, refused if any one is not public."""
    addresses = resolve(host, port, timeout=timeout)
    if allow_private:
        return addresses
    # One bad address refuses them all: a hostile DNS server can mix good and bad answers.
    for address in addresses:
        if not is_public(address):
            raise Refused(
                f"{host} is or resolves to a private, loopback or link-local address ({address})"
            )
    return addresses


def check_destination(url: str, *, allow_private: bool, field: str = "url") -> None:
    """Raises InvalidInput unless a webhook may be created for `url`."""
    parts = check_url(url, field)
    if allow_private:
        return  # nothing to refuse, so no DNS lookup when the webhook is created
    host = parts.hostname or ""
    port = parts.port or _DEFAULT_PORTS[parts.scheme.lower()]
    try:
        addresses = resolve(host, port)
    except Refused:
        return  # not (yet) in DNS: its deliveries fail, and say so, until it is
    for address in addresses:
        if not is_public(address):
            reason = f"{host} is or resolves to a private, loopback or link-local address"
            raise InvalidInput(field, f"{reason} ({address})")


@dataclass(frozen=True)
class Pinned:
    """A request to send, with httpx, to one address already checked."""

    url: str
    headers: dict[str, str]
    extensions: dict[str, Any]


def _netloc(host: str, port: int | None, scheme: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None or port == _DEFAULT_PORTS[scheme] else f"{shown}:{port}"


def pin(url: str, address: Address) -> Pinned:
    """The request for `url` sent to `address`, so that httpx does not resolve the host again.

    The URL names the address, the Host header the original host; over TLS the original host
    is also the server name sent (SNI) and the one the certificate must be valid for.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    pinned = urlunsplit(
        (scheme, _netloc(str(address), parts.port, scheme), parts.path, parts.query, "")
    )
    extensions: dict[str, Any] = {"sni_hostname": host} if scheme == "https" else {}
    return Pinned(pinned, {"Host": _netloc(host, parts.port, scheme)}, extensions)
