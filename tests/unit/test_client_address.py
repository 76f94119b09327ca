"""serving/client_address.py and /metrics access behind proxies, on made-up ASGI scopes."""

from __future__ import annotations

import ipaddress

import pytest

from product_classifier.serving.client_address import parse_ip, resolve_client
from product_classifier.serving.observability import MetricsAccess

PROXY = "10.0.0.2"
TRUSTED = [ipaddress.ip_network("10.0.0.0/24")]


def scope(peer: str | None, *headers: tuple[str, str]) -> dict:
    return {
        "client": (peer, 5555) if peer else None,
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers],
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.7", "192.0.2.7"),
        (" 192.0.2.7:8080 ", "192.0.2.7"),
        ('"192.0.2.7:8080"', "192.0.2.7"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ('"[2001:db8::1]:4711"', "2001:db8::1"),
        ("::ffff:10.0.0.7", "10.0.0.7"),
        ("unknown", None),
        ("_hidden", None),
        ("192.0.2.7:http", None),
        ("[2001:db8::1]junk", None),
        ("", None),
    ],
)
def test_parse_ip(text: str, expected: str | None) -> None:
    ip = parse_ip(text)
    assert (str(ip) if ip else None) == expected


def test_headers_from_an_untrusted_peer_are_ignored_and_flagged() -> None:
    plain = resolve_client(scope("203.0.113.9"), TRUSTED)
    assert str(plain.ip) == "203.0.113.9" and not plain.untrusted_forwarding
    spoofed = resolve_client(scope("203.0.113.9", ("X-Forwarded-For", "127.0.0.1")), TRUSTED)
    assert str(spoofed.ip) == "203.0.113.9" and spoofed.untrusted_forwarding
    # No trusted proxies at all (the default): any forwarding header is flagged.
    local = resolve_client(scope("127.0.0.1", ("Forwarded", "for=10.0.0.9")), [])
    assert local.untrusted_forwarding


@pytest.mark.parametrize(
    ("headers", "client"),
    [
        ((), PROXY),  # the proxy host itself, not forwarding
        ((("X-Forwarded-For", "192.0.2.7"),), "192.0.2.7"),
        ((("X-Forwarded-For", "192.0.2.7, 10.0.0.3"),), "192.0.2.7"),  # two trusted hops
        # The client wrote "127.0.0.1" itself; the proxy appended the real address.
        ((("X-Forwarded-For", "127.0.0.1, 198.51.100.4"),), "198.51.100.4"),
        ((("X-Forwarded-For", "127.0.0.1"), ("X-Forwarded-For", "198.51.100.4")), "198.51.100.4"),
        ((("Forwarded", 'for="[2001:db8::1]:4711";proto=https;by=10.0.0.2'),), "2001:db8::1"),
        ((("Forwarded", "for=127.0.0.1, for=198.51.100.4"),), "198.51.100.4"),
        ((("Forwarded", "for=10.0.0.3"),), "10.0.0.3"),  # every hop trusted: the first
        ((("Forwarded", "for=_hidden"),), None),
        ((("X-Forwarded-For", "garbage"),), None),
        ((("X-Forwarded-For", ""),), None),
        # The two headers disagree: one of them came from the client, so neither counts.
        ((("Forwarded", "for=127.0.0.1"), ("X-Forwarded-For", "198.51.100.4")), None),
        ((("Forwarded", "for=192.0.2.7"), ("X-Forwarded-For", "192.0.2.7")), "192.0.2.7"),
    ],
)
def test_a_trusted_proxy_names_the_client(headers: tuple, client: str | None) -> None:
    resolved = resolve_client(scope(PROXY, *headers), TRUSTED)
    assert not resolved.untrusted_forwarding
    assert (str(resolved.ip) if resolved.ip else None) == client


def test_metrics_behind_a_trusted_proxy() -> None:
    access = MetricsAccess(["192.0.2.0/24"], None, trusted_proxies=["10.0.0.0/24"])
    allowed = access.check(scope(PROXY, ("X-Forwarded-For", "192.0.2.7")))
    assert allowed is None
    for denied_scope in (
        scope(PROXY),  # the proxy's own address is not in the allowed network
        scope(PROXY, ("X-Forwarded-For", "198.51.100.4")),
        scope(PROXY, ("X-Forwarded-For", "192.0.2.7, 198.51.100.4")),
        scope("192.0.2.7", ("X-Forwarded-For", "192.0.2.7")),  # forwarded by an unknown proxy
    ):
        denied = access.check(denied_scope)
        assert denied is not None and denied.status_code == 403


def test_metrics_by_default_refuse_anything_forwarded() -> None:
    """A reverse proxy on the same host makes every client look like loopback."""
    access = MetricsAccess(["127.0.0.0/8"], None)
    assert access.check(scope("127.0.0.1")) is None
    denied = access.check(scope("127.0.0.1", ("X-Forwarded-For", "203.0.113.9")))
    assert denied is not None and denied.status_code == 403
