"""Where a webhook may send: URL checks, the private-address guard, bounded DNS, pinning."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.errors import InvalidInput
from app.webhooks.destinations import (
    MAX_URL_LENGTH,
    Pinned,
    Refused,
    check_destination,
    check_url,
    is_public,
    pin,
    public_addresses,
    resolve,
)
from tests.fixtures.receivers import Receivers
from tests.fixtures.tls import make_certificate

TLS_HOST = "hooks.example.test"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/hook", "must be an http or https URL"),
        ("javascript:alert(1)", "must be an http or https URL"),
        ("file:///etc/passwd", "must be an http or https URL"),
        ("example.com/hook", "must be an http or https URL"),
        ("http:///hook", "must have a host"),
        ("https://", "must have a host"),
        ("http://:8080/hook", "must have a host"),
        ("https://user:pass@example.com/", "must not contain credentials"),
        ("https://user@example.com/", "must not contain credentials"),
        ("http://example.com:0/", "port between 1 and 65535"),
        ("http://example.com:65536/", "port between 1 and 65535"),
        ("http://example.com:http/", "port between 1 and 65535"),
        ("http://[::1/", "valid URL"),
        ("https://example.com/hook#part", "must not have a fragment"),
        ("https://example.com/" + "a" * MAX_URL_LENGTH, "at most 2048 characters"),
        ("https://example.com/a b", "spaces or control characters"),
        ("https://exa\tmple.com/", "spaces or control characters"),
        ("https://example.com/\nHost: evil", "spaces or control characters"),
        (" https://example.com/", "spaces or control characters"),
        ("https://example.com/\x00", "spaces or control characters"),
        ("https://example.com/\u200b", "spaces or control characters"),
        ("https://exämple.com/", "xn--"),
        ("https://exa<mple.com/", "valid host name"),
        ("https://example..com/", "valid host name"),
        ("http://[2606:4700::1111]:8080/", "not an IPv6 one"),
        ("https://example.com/caf\u00e9", "printable ASCII"),
    ],
)
def test_unacceptable_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_url(url, field="target")
    assert caught.value.field == "target"
    assert message in caught.value.message


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "https://example.com/",
        "HTTPS://Example.COM/hook",
        "https://hooks.example.com:8443/a/b?x=1&y=%20",
        "http://127.0.0.1:1/hook",
        "https://xn--exmple-cua.com/hook",
        "https://example.com/" + "a" * (MAX_URL_LENGTH - len("https://example.com/")),
    ],
)
def test_acceptable_urls_are_split(url: str) -> None:
    parts = check_url(url)
    assert parts.scheme.lower() in ("http", "https")
    assert parts.hostname


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "0.1.2.3",
        "192.0.0.1",
        "198.18.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "224.0.0.1",
        "239.255.255.250",
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "fec0::1",
        "ff02::1",
        "ff0e::1",
        "2001:db8::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "64:ff9b::127.0.0.1",
        "2002:7f00:1::1",
        "2002:a00:1::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    ],
)
def test_non_public_addresses(address: str) -> None:
    assert not is_public(ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "2606:4700::1111",
        "::ffff:93.184.216.34",
        "64:ff9b::8.8.8.8",
        "2002:5db8:d822::1",
    ],
)
def test_public_addresses(address: str) -> None:
    assert is_public(ip_address(address))


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1", "[::1]"])
def test_loopback_is_refused_unless_private_is_allowed(host: str) -> None:
    with pytest.raises(Refused) as caught:
        public_addresses(host, 80, allow_private=False)
    assert "private, loopback or link-local" in caught.value.reason
    addresses = public_addresses(host, 80, allow_private=True)
    assert addresses and all(address.is_loopback for address in addresses)


def _fake_getaddrinfo(*found: str) -> Any:
    def getaddrinfo(*args: Any, **kwargs: Any) -> list[Any]:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 80))
            for a in found
        ]

    return getaddrinfo


def test_one_private_address_among_public_ones_refuses_them_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _fake_getaddrinfo("93.184.216.34", "10.0.0.1"))
    with pytest.raises(Refused, match=r"mixed\.example is or resolves to .*\(10\.0\.0\.1\)"):
        public_addresses("mixed.example", 443, allow_private=False)


def test_resolve_keeps_the_resolver_order_without_duplicates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _fake_getaddrinfo("93.184.216.34", "2606:4700::1111", "93.184.216.34", "8.8.8.8")
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    assert resolve("many.example", 443) == [
        IPv4Address("93.184.216.34"),
        IPv6Address("2606:4700::1111"),
        IPv4Address("8.8.8.8"),
    ]


def test_an_unknown_name_is_refused_promptly() -> None:
    started = time.monotonic()
    with pytest.raises(Refused, match=r"^cannot resolve does-not-exist\.invalid: "):
        resolve("does-not-exist.invalid", 443)
    assert time.monotonic() - started < 3


def test_a_resolver_that_hangs_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def hanging(*args: Any, **kwargs: Any) -> list[Any]:
        release.wait(30)
        return []

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    started = time.monotonic()
    try:
        with pytest.raises(Refused, match=r"no answer within 0\.2 s"):
            resolve("slow.example", 443, timeout=0.2)
    finally:
        release.set()
    assert time.monotonic() - started < 2


def test_ip_literals_are_not_looked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _fail_if_called)
    assert resolve("93.184.216.34", 80) == [IPv4Address("93.184.216.34")]
    assert resolve("[2606:4700::1111]", 80) == [IPv6Address("2606:4700::1111")]


def _fail_if_called(*args: Any, **kwargs: Any) -> list[Any]:
    raise AssertionError("getaddrinfo was called")


def test_check_destination_turns_a_refusal_into_invalid_input() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_destination("http://127.0.0.1:9/hook", allow_private=False, field="target_url")
    assert caught.value.field == "target_url"
    assert "private, loopback or link-local" in caught.value.message
    with pytest.raises(InvalidInput, match="must be an http or https URL"):
        check_destination("ftp://127.0.0.1/", allow_private=True)


def test_check_destination_accepts_public_literals_and_skips_dns_when_private_is_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _fail_if_called)
    check_destination("https://93.184.216.34/hook", allow_private=False)
    check_destination("http://internal.example:8080/hook", allow_private=True)


@pytest.mark.parametrize(
    ("url", "address", "expected"),
    [
        (
            "http://hooks.example.com/a/b?x=1",
            "93.184.216.34",
            Pinned("http://93.184.216.34/a/b?x=1", {"Host": "hooks.example.com"}, {}),
        ),
        (
            "http://Hooks.Example.com:8080/hook",
            "93.184.216.34",
            Pinned("http://93.184.216.34:8080/hook", {"Host": "hooks.example.com:8080"}, {}),
        ),
        (
            "https://hooks.example.com:443/hook?q=%20",
            "2606:4700::1111",
            Pinned(
                "https://[2606:4700::1111]/hook?q=%20",
                {"Host": "hooks.example.com"},
                {"sni_hostname": "hooks.example.com"},
            ),
        ),
        (
            "https://hooks.example.com:8443/",
            "2606:4700::1111",
            Pinned(
                "https://[2606:4700::1111]:8443/",
                {"Host": "hooks.example.com:8443"},
                {"sni_hostname": "hooks.example.com"},
            ),
        ),
        (
            "http://[2606:4700::1111]:81/hook",
            "2606:4700::1111",
            Pinned("http://[2606:4700::1111]:81/hook", {"Host": "[2606:4700::1111]:81"}, {}),
        ),
    ],
)
def test_pin_names_the_address_in_the_url_and_the_host_in_the_headers(
    url: str, address: str, expected: Pinned
) -> None:
    assert pin(url, ip_address(address)) == expected


def test_a_pinned_request_reaches_the_address_with_the_original_host(
    receivers: Receivers,
) -> None:
    receiver = receivers.start()
    pinned = pin(f"http://hooks.example.test:{receiver.port}/hook?x=1", IPv4Address("127.0.0.1"))
    with httpx.Client(trust_env=False) as client:
        response = client.post(
            pinned.url, headers=pinned.headers, extensions=pinned.extensions, content=b"{}"
        )
    assert response.status_code == 200
    [received] = receiver.received
    assert received.headers["host"] == f"hooks.example.test:{receiver.port}"
    assert received.path == "/hook?x=1"


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path, list[str | None]]]:
    """A one-connection TLS server for TLS_HOST; yields its port, CA file and the SNI seen."""
    cert, key = make_certificate(tmp_path, TLS_HOST)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    names: list[str | None] = []
    context.sni_callback = lambda _sock, name, _context: names.append(name)
    listener = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=_answer_once, args=(listener, context), daemon=True)
    thread.start()
    yield listener.getsockname()[1], cert, names
    listener.close()
    thread.join(5)


def _answer_once(listener: socket.socket, context: ssl.SSLContext) -> None:
    listener.settimeout(10)
    try:
        raw, _ = listener.accept()
        with context.wrap_socket(raw, server_side=True) as conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
    except (OSError, ssl.SSLError):
        pass  # the client refused the certificate, or nobody came


def test_a_pinned_https_request_checks_the_certificate_against_the_original_host(
    tls_server: tuple[int, Path, list[str | None]],
) -> None:
    port, ca_file, names = tls_server
    pinned = pin(f"https://{TLS_HOST}:{port}/hook", IPv4Address("127.0.0.1"))
    verify = ssl.create_default_context(cafile=str(ca_file))
    with httpx.Client(verify=verify, trust_env=False) as client:
        response = client.post(pinned.url, headers=pinned.headers, extensions=pinned.extensions)
    assert response.status_code == 204
    assert names == [TLS_HOST]


def test_a_pinned_https_request_refuses_a_certificate_for_another_host(
    tls_server: tuple[int, Path, list[str | None]],
) -> None:
    port, ca_file, _ = tls_server
    pinned = pin(f"https://other.example.test:{port}/hook", IPv4Address("127.0.0.1"))
    verify = ssl.create_default_context(cafile=str(ca_file))
    with httpx.Client(verify=verify, trust_env=False) as client, pytest.raises(httpx.ConnectError):
        client.post(pinned.url, headers=pinned.headers, extensions=pinned.extensions)


def test_check_destination_accepts_a_name_not_in_dns_yet() -> None:
    """Its deliveries fail (`cannot resolve`) until it resolves, then are checked again."""
    check_destination("https://does-not-exist.invalid/hook", allow_private=False)


@pytest.mark.parametrize(
    "url",
    ["http://0/", "http://2130706433/", "http://0x7f.1/", "http://1.2.3/", "http://01.2.3.4/"],
)
def test_numeric_hosts_other_than_dotted_quads_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput, match="dotted quads"):
        check_url(url)
