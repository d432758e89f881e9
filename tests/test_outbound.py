"""The SSRF-safe outbound client against a real HTTP server and a real DNS server on loopback."""

from __future__ import annotations

import ipaddress
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from dnslib import AAAA, QTYPE, RR, A, DNSRecord  # type: ignore[import-untyped]
from dnslib.server import DNSLogger, DNSServer  # type: ignore[import-untyped]

from obdal.servers import free_port
from obdal_common.outbound import (
    NameserverResolver,
    OutboundClient,
    OutboundPolicy,
    OutboundRefused,
    SystemResolver,
    resolver_from_setting,
)

UA = "ObdalTest/1"
LOOPBACK = OutboundPolicy.from_setting("127.0.0.1/32")


@dataclass
class Site:
    port: int
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (path, client IP, Host)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
            self.send_response(status)
            headers.setdefault("Content-Type", "text/html; charset=utf-8")
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            site.requests.append((self.path, self.client_address[0], self.headers.get("Host", "")))
            path = self.path
            if path == "/page":
                self._send(200, f"<p>ok {self.headers.get('User-Agent')}</p>".encode())
            elif path.startswith("/chain/"):
                left = int(path.rsplit("/", 1)[1])
                self._send(302, Location=f"/chain/{left - 1}" if left else "/page")
            elif path == "/loop/a":
                self._send(301, Location=f"{site.base}/loop/b")
            elif path == "/loop/b":
                self._send(308, Location="/loop/a")
            elif path == "/to-other":
                self._send(302, Location=f"http://127.0.0.2:{site.port}/page")
            elif path == "/to-metadata":
                self._send(307, Location="http://169.254.169.254/latest/meta-data/")
            elif path == "/large":
                self._send(200, b"x" * 5000)
            elif path == "/json":
                self._send(200, b"{}", Content_Type="application/json")
            elif path == "/missing":
                self._send(404, b"gone")
            elif path == "/unchanged":
                self.send_response(304)
                self.end_headers()
            elif path == "/slow":
                time.sleep(1.5)
                self._send(200, b"late")
            elif path in ("/forever", "/flood"):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Connection", "close")
                self.end_headers()
                while not site.stop.is_set():
                    try:
                        self.wfile.write(b"x" * (1000 if path == "/flood" else 1))
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(0.001 if path == "/flood" else 0.05)
            else:
                self._send(404)

    return Handler


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    info = Site(free_port())
    server = ThreadingHTTPServer(("127.0.0.1", info.port), _handler(info))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield info
    info.stop.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


class Zone:
    """Names for the tests; ``rebind.test`` answers 127.0.0.1 first, then 127.0.0.2."""

    def __init__(self) -> None:
        self.queries: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        with self.lock:
            self.queries.append((name, qtype))
            rebinds = sum(1 for q in self.queries if q == ("rebind.test", "A"))
        records: dict[str, list[str]] = {
            "public.test": ["93.184.215.14"],
            "mixed.test": ["93.184.215.14", "10.0.0.5"],
            "private.test": ["192.168.0.10"],
            "local.test": ["127.0.0.1"],
            "rebind.test": ["127.0.0.1" if rebinds <= 1 else "127.0.0.2"],
        }
        if qtype == "A":
            for address in records.get(name, []):
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=0))
        elif qtype == "AAAA" and name in ("v6only.test", "public.test"):
            address = "::1" if name == "v6only.test" else "2606:2800:220:1::1"
            reply.add_answer(RR(request.q.qname, QTYPE.AAAA, rdata=AAAA(address), ttl=0))
        return reply


@pytest.fixture(scope="module")
def dns() -> Iterator[tuple[Zone, NameserverResolver]]:
    zone = Zone()
    port = free_port()
    server = DNSServer(zone, port=port, address="127.0.0.1", logger=DNSLogger(logf=lambda *_: None))
    server.start_thread()
    yield zone, NameserverResolver("127.0.0.1", port)
    server.stop()
    server.server.server_close()


async def _refused(client: OutboundClient, url: str, **options: Any) -> OutboundRefused:
    with pytest.raises(OutboundRefused) as caught:
        await client.fetch(url, **options)
    assert caught.value.url
    assert len(caught.value.message) > 20
    return caught.value


SSRF = [
    ("http://127.0.0.1:{port}/page", "private_address"),
    ("http://2130706433:{port}/page", "private_address"),
    ("http://0177.0.0.1:{port}/page", "private_address"),
    ("http://0x7f000001:{port}/page", "private_address"),
    ("http://0x7f.1:{port}/page", "private_address"),
    ("http://127.1:{port}/page", "private_address"),
    ("http://localhost:{port}/page", "private_address"),
    ("http://[::1]:{port}/page", "private_address"),
    ("http://[::ffff:127.0.0.1]:{port}/page", "private_address"),
    ("http://[64:ff9b::7f00:1]:{port}/page", "private_address"),
    ("http://[2002:7f00:1::]:{port}/page", "private_address"),
    ("http://[::127.0.0.1]:{port}/page", "private_address"),
    ("http://169.254.169.254/latest/meta-data/", "private_address"),
    ("http://100.64.0.1/", "private_address"),
    ("http://10.0.0.1/", "private_address"),
    ("http://192.168.1.1/", "private_address"),
    ("http://172.16.0.1/", "private_address"),
    ("http://198.18.0.1/", "private_address"),
    ("http://192.0.2.1/", "private_address"),
    ("http://255.255.255.255/", "private_address"),
    ("http://0.0.0.0:{port}/page", "private_address"),
    ("http://[::]:{port}/page", "private_address"),
    ("http://224.0.0.1/", "private_address"),
    ("http://[fe80::1]/", "private_address"),
    ("http://[fc00::1]/", "private_address"),
    ("http://[fec0::1]/", "private_address"),
    ("http://[ff02::1]/", "private_address"),
    ("ftp://127.0.0.1:{port}/page", "scheme_not_allowed"),
    ("file:///etc/passwd", "scheme_not_allowed"),
    ("gopher://127.0.0.1:{port}/_page", "scheme_not_allowed"),
    ("http://user:pw@example.com/", "credentials_in_url"),
    ("http://user@127.0.0.1:{port}/page", "credentials_in_url"),
    ("http:///page", "invalid_url"),
    ("http://127.0.0.1:99999/", "invalid_url"),
]


@pytest.mark.parametrize(("template", "code"), SSRF)
async def test_default_policy_refuses(site: Site, template: str, code: str) -> None:
    url = template.format(port=site.port)
    before = len(site.requests)
    async with OutboundClient(OutboundPolicy(), user_agent=UA) as client:
        refused = await _refused(client, url)
        assert refused.code == code, refused.message
        with pytest.raises(OutboundRefused) as checked:
            await client.check_url(url)
        assert checked.value.code == code
    assert len(site.requests) == before


def test_refusal_words() -> None:
    policy = OutboundPolicy()
    assert policy.refusal("8.8.8.8") is None
    assert policy.refusal("2606:4700::1111") is None
    assert "loopback" in (policy.refusal("127.0.0.1") or "")
    assert "metadata" in (policy.refusal("169.254.169.254") or "")
    assert "carrier-grade" in (policy.refusal("100.64.0.1") or "")
    assert "127.0.0.1" in (policy.refusal("::ffff:127.0.0.1") or "")
    assert policy.refusal("64:ff9b::808:808") is None  # NAT64 of a public address


async def test_allowed_page_host_and_user_agent(site: Site) -> None:
    async with OutboundClient(LOOPBACK, user_agent=UA) as client:
        fetched = await client.fetch(f"{site.base}/page", accept={"text/html"})
    assert fetched.status == 200
    assert fetched.body == f"<p>ok {UA}</p>".encode()
    assert fetched.address == "127.0.0.1"
    assert fetched.redirects == ()
    assert site.requests[-1] == ("/page", "127.0.0.1", f"127.0.0.1:{site.port}")


async def test_legacy_spelling_allowed_normalised(site: Site) -> None:
    async with OutboundClient(LOOPBACK, user_agent=UA) as client:
        fetched = await client.fetch(f"http://2130706433:{site.port}/page")
    assert fetched.status == 200
    assert fetched.url == f"{site.base}/page"


async def test_redirect_chain_of_three(site: Site) -> None:
    async with OutboundClient(LOOPBACK, user_agent=UA) as client:
        fetched = await client.fetch(f"{site.base}/chain/2")
    assert fetched.status == 200
    assert fetched.url == f"{site.base}/page"
    assert fetched.redirects == tuple(f"{site.base}/chain/{n}" for n in (2, 1, 0))


async def test_limits(site: Site) -> None:
    policy = OutboundPolicy.from_setting("127.0.0.1", max_bytes=4000, timeout_s=1.0)
    async with OutboundClient(policy, user_agent=UA) as client:
        assert (await _refused(client, f"{site.base}/chain/5")).code == "too_many_redirects"
        assert (await client.fetch(f"{site.base}/chain/4")).status == 200  # exactly five hops
        assert (await _refused(client, f"{site.base}/loop/a")).code == "redirect_loop"
        assert (await _refused(client, f"{site.base}/large")).code == "too_large"
        assert (await client.fetch(f"{site.base}/large", max_bytes=5000)).body == b"x" * 5000
        assert (await _refused(client, f"{site.base}/flood")).code == "too_large"
        assert (await _refused(client, f"{site.base}/forever")).code == "timeout"
        assert (await _refused(client, f"{site.base}/slow")).code == "timeout"
        wrong = await _refused(client, f"{site.base}/json", accept={"text/html"})
        assert wrong.code == "content_type_not_allowed"
        assert "application/json" in wrong.message
        missing = await client.fetch(f"{site.base}/missing", accept={"text/html"})
        assert (missing.status, missing.body) == (404, b"gone")
        assert (await client.fetch(f"{site.base}/unchanged")).status == 304


async def test_redirect_to_private_is_never_fetched(site: Site) -> None:
    async with OutboundClient(LOOPBACK, user_agent=UA) as client:
        before = len(site.requests)
        assert (await _refused(client, f"{site.base}/to-other")).code == "private_address"
        assert (await _refused(client, f"{site.base}/to-metadata")).code == "private_address"
    assert [r[0] for r in site.requests[before:]] == ["/to-other", "/to-metadata"]


async def test_connect_failed() -> None:
    port = free_port()  # nothing listens there
    async with OutboundClient(LOOPBACK, user_agent=UA) as client:
        assert (await _refused(client, f"http://127.0.0.1:{port}/")).code == "connect_failed"


async def test_names(site: Site, dns: tuple[Zone, NameserverResolver]) -> None:
    _, resolver = dns
    async with OutboundClient(OutboundPolicy(), user_agent=UA, resolver=resolver) as client:
        await client.check_url("https://public.test/a")
        for name in ("mixed", "private", "v6only", "local"):
            with pytest.raises(OutboundRefused) as caught:
                await client.check_url(f"http://{name}.test:{site.port}/page")
            assert caught.value.code == "private_address", name
        mixed = await _refused(client, f"http://mixed.test:{site.port}/page")
        assert "10.0.0.5" in mixed.message
        assert (await _refused(client, "http://nowhere.test/")).code == "unresolvable"
    allowed = OutboundPolicy.from_setting("local.test")
    async with OutboundClient(allowed, user_agent=UA, resolver=resolver) as client:
        fetched = await client.fetch(f"http://local.test:{site.port}/page")
    assert fetched.address == "127.0.0.1"
    assert site.requests[-1] == ("/page", "127.0.0.1", f"local.test:{site.port}")


async def test_rebinding_is_pinned(site: Site, dns: tuple[Zone, NameserverResolver]) -> None:
    zone, resolver = dns
    url = f"http://rebind.test:{site.port}/page"
    async with OutboundClient(LOOPBACK, user_agent=UA, resolver=resolver) as client:
        fetched = await client.fetch(url)
        # The name was looked up once, and the request went to the address that was checked.
        assert zone.queries.count(("rebind.test", "A")) == 1
        assert fetched.address == "127.0.0.1"
        assert site.requests[-1] == ("/page", "127.0.0.1", f"rebind.test:{site.port}")
        before = len(site.requests)
        refused = await _refused(client, url)
    assert refused.code == "private_address"
    assert "127.0.0.2" in refused.message
    assert zone.queries.count(("rebind.test", "A")) == 2
    assert len(site.requests) == before


def test_from_setting() -> None:
    policy = OutboundPolicy.from_setting(
        " 127.0.0.0/8, 10.1.0.0/16,intranet.example., 192.168.1.7 ,", max_redirects=2
    )
    assert policy.allow_networks == tuple(
        ipaddress.ip_network(n) for n in ("127.0.0.0/8", "10.1.0.0/16", "192.168.1.7/32")
    )
    assert policy.allow_hosts == frozenset({"intranet.example"})
    assert policy.max_redirects == 2
    assert policy.refusal("10.1.2.3") is None
    assert policy.refusal("10.2.0.1") is not None
    assert OutboundPolicy.from_setting("") == OutboundPolicy()
    for bad in ("10.0.0.0/33", "999.1.1.1", "exa mple.com", "http://x.com"):
        with pytest.raises(ValueError, match=re.escape(bad)):
            OutboundPolicy.from_setting(f"127.0.0.1, {bad}")


def test_resolver_from_setting() -> None:
    assert isinstance(resolver_from_setting(None), SystemResolver)
    assert isinstance(resolver_from_setting(""), SystemResolver)
    assert isinstance(resolver_from_setting("127.0.0.1:5353"), NameserverResolver)
    assert isinstance(resolver_from_setting("[::1]:53"), NameserverResolver)
    for bad in ("127.0.0.1", "dns.example:53", "127.0.0.1:0", "127.0.0.1:x"):
        with pytest.raises(ValueError, match="nameserver"):
            resolver_from_setting(bad)
