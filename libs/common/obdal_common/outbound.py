"""The one outbound HTTP client Obdal fetches websites with (pages, robots.txt, sitemaps, linked PDFs).

A source URL is chosen by a user, so without care it is a request forgery (SSRF) tool against
Obdal's own network: cloud metadata at 169.254.169.254, Redis or NATS on loopback, the intranet.
This client refuses every address that is not globally routable, however it is spelled
(``2130706433``, ``0177.0.0.1``, ``127.1``, ``[::ffff:127.0.0.1]``, NAT64 and 6to4 forms).

The check is pinned at connect time: each connection resolves the name once, checks every address
the name has, then connects to one of those same addresses (the URL's host becomes the IP, the
``Host`` header and TLS SNI keep the name). A check followed by a separate fetch leaves a
DNS-rebinding window: the name answers a public address to the check and a private one to the
fetch's own lookup. Onyx checks DNS before a separate fetch; AnythingLLM checks literal IPs only.
Redirects are followed here, one hop at a time, each hop checked from scratch.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import dns.asyncresolver
import dns.exception
import dns.resolver
import httpx
from pydantic import Field, field_validator

from obdal_common.errors import UnprocessableContent
from obdal_common.settings import ObdalSettings

__all__ = [
    "Fetched",
    "NameserverResolver",
    "OutboundClient",
    "OutboundPolicy",
    "OutboundRefused",
    "OutboundSettings",
    "Resolver",
    "SystemResolver",
    "resolver_from_setting",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
# What inet_aton may be given: its legacy forms only (glibc also accepts trailing junk after a space).
_LEGACY_V4 = re.compile(r"^[0-9a-fx.]+$")

# Named first so a refusal says what the address is; anything else not global is refused too.
_REFUSED: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), words)
    for net, words in (
        ("0.0.0.0/8", "an unspecified/this-network address"),
        ("10.0.0.0/8", "a private (RFC 1918) address"),
        ("100.64.0.0/10", "a carrier-grade NAT (shared) address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address (cloud metadata lives here)"),
        ("172.16.0.0/12", "a private (RFC 1918) address"),
        ("192.0.0.0/24", "an IETF protocol assignment address"),
        ("192.0.2.0/24", "a documentation address"),
        ("192.88.99.0/24", "a 6to4 relay anycast address"),
        ("192.168.0.0/16", "a private (RFC 1918) address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address (or broadcast)"),
        ("::/128", "the unspecified address"),
        ("::1/128", "the loopback address"),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("100::/64", "a discard-only address"),
        ("2001::/23", "an IETF protocol assignment address"),
        ("2001:db8::/32", "a documentation address"),
        ("fc00::/7", "a unique local address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")


class OutboundRefused(UnprocessableContent):
    """A URL Obdal will not fetch, or a fetch that could not finish; ``code`` says which."""

    def __init__(self, message: str, *, code: str, url: str) -> None:
        super().__init__(message, code=code)
        self.url = url


def _embedded_v4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, NAT64, 6to4, IPv4-compatible): what is reached."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _V4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _class_of(address: IPAddress) -> str | None:
    """Why ``address`` is not globally routable, or ``None`` when it is."""
    for network, words in _REFUSED:
        if address.version == network.version and address in network:
            return words
    return None if address.is_global else "not a globally routable address"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundPolicy:
    """Where fetches may go beyond the public internet, and how much they may take."""

    allow_networks: tuple[IPNetwork, ...] = ()
    allow_hosts: frozenset[str] = frozenset()
    max_redirects: int = 5
    max_bytes: int = 10 * 1024 * 1024
    timeout_s: float = 20.0
    connect_timeout_s: float = 5.0

    @classmethod
    def from_setting(cls, allow: str, **options: Any) -> OutboundPolicy:
        """A policy from ``OBDAL_OUTBOUND_ALLOW``: comma-separated CIDRs, IPs and host names."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for raw in allow.split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            name = entry.removesuffix(".")
            # An all-digit last label is a mistyped address (999.1.1.1), never a name.
            if len(name) > 253 or not _HOST_NAME.match(name) or name.rsplit(".", 1)[-1].isdigit():
                raise ValueError(f"{raw.strip()!r} is neither an IP address, a CIDR network nor a host name")
            hosts.add(name)
        return cls(allow_networks=tuple(networks), allow_hosts=frozenset(hosts), **options)

    def refusal(self, address: str) -> str | None:
        """Why ``address`` may not be connected to, in words, or ``None`` when it may."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return f"{address!r} is not an IP address"
        inner = _embedded_v4(ip)
        if any(a.version == n.version and a in n for a in (ip, inner) if a for n in self.allow_networks):
            return None
        reason = _class_of(ip) if inner is None else _class_of(inner)
        if reason is None:
            return None
        carried = f" (it carries {inner})" if inner is not None else ""
        return f"{address} is {reason}{carried}, which Obdal does not connect to"


class Resolver(Protocol):
    async def resolve(self, host: str, port: int) -> list[str]:
        """Every address (IPv4 and IPv6) of ``host``; :class:`OutboundRefused` ``unresolvable`` if none."""
        ...


def _unresolvable(host: str, why: str) -> OutboundRefused:
    return OutboundRefused(
        f"the host name {host} could not be resolved: {why}", code="unresolvable", url=host
    )


class SystemResolver:
    """The operating system's resolver (``getaddrinfo``)."""

    async def resolve(self, host: str, port: int) -> list[str]:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise _unresolvable(host, str(exc)) from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise _unresolvable(host, "no addresses")
        return addresses


class NameserverResolver:
    """A configured nameserver, asked for A and AAAA on every call (no cache: each lookup is checked)."""

    def __init__(self, host: str, port: int) -> None:
        self._resolver = dns.asyncresolver.Resolver(configure=False)
        self._resolver.nameservers = [host]
        self._resolver.port = port
        self._resolver.lifetime = 5.0

    async def _query(self, host: str, rdtype: str) -> list[str]:
        try:
            answer = await self._resolver.resolve(host, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise _unresolvable(host, str(exc)) from None
        return [rdata.to_text() for rdata in answer]

    async def resolve(self, host: str, port: int) -> list[str]:
        v4, v6 = await asyncio.gather(self._query(host, "A"), self._query(host, "AAAA"))
        if not v4 and not v6:
            raise _unresolvable(host, "the name has no A or AAAA record")
        return v4 + v6


def resolver_from_setting(value: str | None) -> Resolver:
    """``None``/``""``: the system's resolver; ``"host:port"`` (``[v6]:port``): that nameserver."""
    if not value:
        return SystemResolver()
    host, sep, port = value.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ValueError(f"{value!r} is not a nameserver as IP:port (e.g. 127.0.0.1:5353)") from None
    if not sep or not 0 < number < 65536:
        raise ValueError(f"{value!r} is not a nameserver as IP:port (e.g. 127.0.0.1:5353)")
    return NameserverResolver(host, number)


@dataclass(frozen=True, slots=True)
class Fetched:
    """A final response. ``redirects``: each URL that answered with a redirect, the requested one first."""

    url: str
    status: int
    headers: httpx.Headers
    body: bytes
    redirects: tuple[str, ...]
    address: str


@dataclass(frozen=True, slots=True)
class _Target:
    """A URL checked and pinned: where to connect and what to call the host."""

    url: str  # the normalised URL (fragment dropped), as redirects are compared
    connect: httpx.URL  # the same with the checked IP as host
    host_header: str
    sni: str | None  # https only: TLS SNI and certificate verification use the name, not the IP
    address: str


def _literal(host: str) -> IPAddress | None:
    """``host`` as an IP address if it is one in any spelling (legacy IPv4 forms included)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_V4.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


class OutboundClient:
    """Fetches public web resources under an :class:`OutboundPolicy`; never raises an httpx error."""

    def __init__(self, policy: OutboundPolicy, *, user_agent: str, resolver: Resolver | None = None) -> None:
        self._policy = policy
        self._resolver = resolver or SystemResolver()
        self._client = httpx.AsyncClient(
            headers={"User-Agent": user_agent},
            timeout=httpx.Timeout(policy.timeout_s, connect=policy.connect_timeout_s),
            # No keep-alive: a pooled connection is keyed by IP only, so one opened with another
            # name's SNI (and certificate) could otherwise serve this name.
            limits=httpx.Limits(max_keepalive_connections=0),
            follow_redirects=False,
            trust_env=False,
        )

    @property
    def policy(self) -> OutboundPolicy:
        return self._policy

    async def __aenter__(self) -> OutboundClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def check_url(self, url: str) -> None:
        """Raise :class:`OutboundRefused` now if a fetch of ``url`` would be refused before connecting."""
        try:
            # Bounded: the caller (a source's creation) answers within seconds, whatever DNS does.
            async with asyncio.timeout(self._policy.connect_timeout_s):
                await self._target(url)
        except TimeoutError:
            raise OutboundRefused(
                f"resolving the host of {url} took longer than {self._policy.connect_timeout_s:g} s",
                code="unresolvable",
                url=url,
            ) from None

    async def fetch(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        accept: Collection[str] | None = None,
        max_bytes: int | None = None,
    ) -> Fetched:
        """GET ``url``, following redirects; any final status is a result."""
        accepted = None if accept is None else frozenset(media.lower() for media in accept)
        limit = self._policy.max_bytes if max_bytes is None else max_bytes
        try:
            async with asyncio.timeout(self._policy.timeout_s):
                return await self._follow(url, dict(headers or {}), accepted, limit)
        except TimeoutError:
            raise OutboundRefused(
                f"fetching {url} took longer than {self._policy.timeout_s:g} s", code="timeout", url=url
            ) from None

    async def post(self, url: str, *, content: bytes, headers: Mapping[str, str], max_bytes: int) -> Fetched:
        """POST ``content`` to ``url`` once. A redirect is the answer, never followed: a receiver
        that redirects could send the body anywhere (webhooks)."""
        try:
            async with asyncio.timeout(self._policy.timeout_s):
                target = await self._target(url)
                _, fetched = await self._hop(
                    target, dict(headers), None, max_bytes, (), method="POST", content=content
                )
        except TimeoutError:
            raise OutboundRefused(
                f"posting to {url} took longer than {self._policy.timeout_s:g} s", code="timeout", url=url
            ) from None
        assert fetched is not None  # a POST's redirect is its final answer
        return fetched

    async def _follow(
        self, url: str, headers: dict[str, str], accepted: frozenset[str] | None, limit: int
    ) -> Fetched:
        target = await self._target(url)
        redirects: list[str] = []
        while True:
            location, fetched = await self._hop(target, headers, accepted, limit, tuple(redirects))
            if fetched is not None:
                return fetched
            redirects.append(target.url)
            if len(redirects) > self._policy.max_redirects:
                raise OutboundRefused(
                    f"{url} redirected more than {self._policy.max_redirects} times",
                    code="too_many_redirects",
                    url=url,
                )
            following = str(httpx.URL(target.url).join(location).copy_with(fragment=None))
            target = await self._target(following)
            if target.url in redirects:
                raise OutboundRefused(
                    f"{url} redirects in a loop back to {target.url}", code="redirect_loop", url=url
                )

    async def _hop(
        self,
        target: _Target,
        headers: dict[str, str],
        accepted: frozenset[str] | None,
        limit: int,
        redirects: tuple[str, ...],
        *,
        method: str = "GET",
        content: bytes | None = None,
    ) -> tuple[str, Fetched | None]:
        """One request: the Location to follow (a GET's), or the final response."""
        request = self._client.build_request(
            method,
            target.connect,
            headers={**headers, "Host": target.host_header},
            content=content,
            extensions={"sni_hostname": target.sni} if target.sni else None,
        )
        url = target.url
        try:
            response = await self._client.send(request, stream=True)
            try:
                location = response.headers.get("location")
                if method == "GET" and response.status_code in _REDIRECTS and location:
                    return location, None
                media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                if accepted is not None and response.is_success and media not in accepted:
                    raise OutboundRefused(
                        f"{url} answered {media or 'no content type'}, not {' or '.join(sorted(accepted))}",
                        code="content_type_not_allowed",
                        url=url,
                    )
                length = response.headers.get("content-length", "")
                if length.isdigit() and int(length) > limit:
                    raise _too_large(url, limit)
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise _too_large(url, limit)
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise OutboundRefused(f"{url} did not answer in time", code="timeout", url=url) from None
        except httpx.HTTPError as exc:
            raise OutboundRefused(
                f"fetching {url} from {target.address} failed: {exc or type(exc).__name__}",
                code="connect_failed",
                url=url,
            ) from None
        fetched = Fetched(url, response.status_code, response.headers, bytes(body), redirects, target.address)
        return "", fetched

    async def _target(self, url: str) -> _Target:
        """Check ``url`` statically, resolve its host once, check every address, and pin one."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise OutboundRefused(f"{url!r} is not a valid URL: {exc}", code="invalid_url", url=url) from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise OutboundRefused(
                f"{url} uses the scheme {scheme or '(none)'!r}; only http and https are fetched",
                code="scheme_not_allowed",
                url=url,
            )
        if "@" in parts.netloc:
            raise OutboundRefused(
                f"{url} carries credentials (user:password@); they are not sent to websites",
                code="credentials_in_url",
                url=url,
            )
        raw_host = (parts.hostname or "").removesuffix(".")
        if not raw_host:
            raise OutboundRefused(f"{url} has no host", code="invalid_url", url=url)
        port = port or _DEFAULT_PORTS[scheme]
        literal = _literal(raw_host)
        if literal is not None:
            host, addresses = str(literal), [str(literal)]
        else:
            try:
                host = httpx.URL(f"{scheme}://{parts.netloc}/").raw_host.decode("ascii")
            except httpx.InvalidURL as exc:
                raise OutboundRefused(
                    f"{url!r} is not a valid URL: {exc}", code="invalid_url", url=url
                ) from None
            try:
                addresses = await self._resolver.resolve(host, port)
            except OutboundRefused as exc:
                raise OutboundRefused(f"{url}: {exc.message}", code=exc.code, url=url) from None
        if literal is not None or host not in self._policy.allow_hosts:
            for address in addresses:
                reason = self._policy.refusal(address)
                if reason is not None:
                    shown = "" if literal is not None else f"{host} resolves to "
                    raise OutboundRefused(f"{url}: {shown}{reason}", code="private_address", url=url)
        address = addresses[0]
        netloc_host = f"[{host}]" if ":" in host else host
        authority = netloc_host if port == _DEFAULT_PORTS[scheme] else f"{netloc_host}:{port}"
        normalised = urlunsplit((scheme, authority, parts.path or "/", parts.query, ""))
        connect = httpx.URL(normalised).copy_with(host=address.split("%", 1)[0])
        return _Target(normalised, connect, authority, host if scheme == "https" else None, address)


def _too_large(url: str, limit: int) -> OutboundRefused:
    return OutboundRefused(f"{url} is larger than {limit} bytes", code="too_large", url=url)


class OutboundSettings(ObdalSettings):
    """What a service that fetches or posts to user-chosen URLs (website sources, webhooks) may reach;
    the same variables for each, so one operator decision covers both."""

    outbound_allow: str = Field(
        "",
        description="Private networks or hosts outbound requests (website sources, webhooks) may reach,"
        " comma-separated CIDRs, addresses or host names (an intranet help centre); public addresses"
        " only by default",
    )
    outbound_nameserver: str = Field(
        "", description="A DNS server (host:port) to resolve outbound hosts with, instead of the system's"
    )

    @field_validator("outbound_allow")
    @classmethod
    def _allow_list(cls, value: str) -> str:
        OutboundPolicy.from_setting(value)  # its ValueError names the entry
        return value

    @field_validator("outbound_nameserver")
    @classmethod
    def _nameserver(cls, value: str) -> str:
        resolver_from_setting(value)
        return value
