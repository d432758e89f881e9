"""Allowed origins: canonical forms that read back as themselves, IPv6 literals,
public-suffix wildcards, and matching that survives a bad stored entry."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from obdal_gateway import origins
from obdal_gateway.origins import InvalidOrigin, origin_allowed, validate_allowed_origin


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("https://shop.example.com", "https://shop.example.com:443"),
        ("HTTPS://Shop.Example.COM/", "https://shop.example.com:443"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://[::1]", "http://[::1]:80"),
        ("http://[0:0:0:0:0:0:0:1]:8080", "http://[::1]:8080"),
        ("https://[2001:DB8::0:1]", "https://[2001:db8::1]:443"),
        ("http://[::ffff:192.0.2.1]:1", "http://[::ffff:c000:201]:1"),
        ("https://*.example.com", "https://*.example.com:443"),
        ("https://*.example.co.uk", "https://*.example.co.uk:443"),
        ("https://*.my-site.github.io", "https://*.my-site.github.io:443"),
        ("https://*.a.b.example.org:8443", "https://*.a.b.example.org:8443"),
        ("https://xn--80ak6aa92e.example.org", "https://xn--80ak6aa92e.example.org:443"),
    ],
)
def test_canonical_form_reads_back_as_itself(given: str, canonical: str) -> None:
    assert validate_allowed_origin(given) == canonical
    assert validate_allowed_origin(canonical) == canonical


@pytest.mark.parametrize(
    "entry",
    [
        "http://::1:8080",  # an IPv6 literal must be bracketed: what the old code stored
        "http://[::1",
        "http://[::1]x:80",
        "http://[not-an-address]",
        "http://[fe80::1%25eth0]",  # zone ids never appear in an Origin
        "https://*.[::1]",
        "https://*.co.uk",
        "https://*.github.io",
        "https://*.vercel.app",
        "https://*.com",
        "https://*.1.2.3",
        "http://127.1",
        "http://256.0.0.1",
        "https://example.com:0",
        "https://example.com:65536",
        "https://example.com:80a",
        "https://user@example.com",
        "https://example.com?x",
        "https://example.com\n/x",
        "https://",
    ],
)
def test_unusable_entries_are_refused(entry: str) -> None:
    with pytest.raises(InvalidOrigin):
        validate_allowed_origin(entry)


def test_public_suffix_wildcard_message_says_why() -> None:
    with pytest.raises(InvalidOrigin, match=r"public suffix 'co\.uk'"):
        validate_allowed_origin("https://*.co.uk")


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://[::1]:8080", True),
        ("http://[0::1]:8080", True),
        ("http://[::1]:8081", False),
        ("http://[::2]:8080", False),
        ("https://[::1]:8080", False),
        ("http://::1:8080", False),
        ("http://127.0.0.1:8080", True),
        ("https://help.example.co.uk", True),
        ("https://example.co.uk", False),
        ("https://evil.co.uk", False),
    ],
)
def test_ipv6_and_suffix_matching(origin: str, allowed: bool) -> None:
    entries = [
        validate_allowed_origin(o)
        for o in ("http://[::1]:8080", "http://127.0.0.1:8080", "https://*.example.co.uk")
    ]
    assert origin_allowed(origin, entries) is allowed


def test_a_bad_stored_entry_is_skipped_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    # Records written before validation: unparsable, or a wildcard now refused.
    legacy = ("http://::1:8080", "garbage-origin-entry", "https://*.co.uk:443", "")
    stored = (*legacy, "https://shop.example.com:443")
    origins._entry.cache_clear()
    with caplog.at_level(logging.WARNING, logger="obdal_gateway.origins"):
        for _ in range(3):
            assert origin_allowed("https://shop.example.com", stored) is True
            assert origin_allowed("https://evil.co.uk", stored) is False
            assert origin_allowed("http://[::1]:8080", legacy) is False
    warned = [r.getMessage() for r in caplog.records if r.name == "obdal_gateway.origins"]
    for entry in legacy:
        assert sum(repr(entry) in message for message in warned) == 1, entry  # once, not per check


def test_the_suffix_list_is_read_from_the_package_never_fetched() -> None:
    code = (
        "import socket\n"
        "def no_network(*a, **k): raise SystemExit('network used')\n"
        "socket.socket = socket.create_connection = socket.getaddrinfo = no_network\n"
        "from obdal_gateway.origins import validate_allowed_origin as v\n"
        "assert v('https://*.example.co.uk') == 'https://*.example.co.uk:443'\n"
        "try: v('https://*.co.uk')\n"
        "except Exception as e: assert 'public suffix' in str(e)\n"
        "else: raise SystemExit('*.co.uk accepted')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
