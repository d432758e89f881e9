"""Crawling a website source: its pages as Markdown (PDF and DOCX raw), politely and within bounds.

- Every request goes through the SSRF-safe :class:`~obdal_common.outbound.OutboundClient`, which
  re-checks each redirect hop: a website must not become a way to reach the cluster's insides.
- A crawl stays on the host it started from and never yields more than ``max_pages`` pages; each
  host's robots.txt (rules and ``Crawl-delay``) is honoured, with a per-host limit on parallel
  requests and a pause between them, so a customer's site is not hammered by its own help bot.
- Main-content extraction runs in the sandboxed parser child (:class:`ParserPool`): trafilatura
  and lxml are a large body of code fed whatever HTML a website serves.
- The hash is of the extracted main content, not of the HTML, so a page whose navigation, ads or
  tracking changed is still ``unchanged`` and is not embedded again.
- Every page kept by the last sync is requested again, conditionally (``If-None-Match``,
  ``If-Modified-Since``): re-syncing an unchanged site costs a 304 a page, and a page that went
  away shows as ``gone`` instead of silently missing.
- Nothing raises out of :meth:`Crawler.crawl`: every refusal or failure is a page with its reason,
  shown on the source's document list. When robots.txt cannot be read (a 5xx, unreachable) nothing
  is fetched and the start page and every known page come back "failed" with
  ``robots_unavailable``: an outage, not the site's refusal, so a sync keeps what it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import posixpath
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from protego import Protego

from obdal_common.formats import DOCX, MARKDOWN, PDF
from obdal_common.outbound import Fetched, OutboundClient, OutboundRefused
from obdal_ingest.parser_pool import ParserPool
from obdal_ingest.parsing import ParseError
from obdal_ingest.sitemaps import SitemapError, discover, read_sitemaps

__all__ = [
    "ACCEPT",
    "USER_AGENT",
    "CrawlPlan",
    "CrawledPage",
    "Crawler",
    "Known",
    "PageOutcome",
    "normalise_url",
]

# Names the crawler, and where a site's owner reads what it does (robots.txt rules apply to it).
USER_AGENT = "ObdalBot/1.0 (+https://github.com/obdal/obdal/blob/main/docs/ingestion.md#websites)"

_HTML = frozenset({"text/html", "application/xhtml+xml"})
_FILES = {".pdf": PDF, ".docx": DOCX}
ACCEPT = _HTML | frozenset(_FILES.values())
"""The media types a crawl fetches; any other answer is refused by the client."""
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_CRAWL_DELAY_S = 5.0  # a site's Crawl-delay above this would make a sync take days
_ROBOTS_MAX_BYTES = 512 * 1024  # what the robots.txt standard (RFC 9309) asks crawlers to read at least
_SITEMAP_MAX_BYTES = 10 * 1024 * 1024  # one sitemap as sent (gzipped ones decompress to more)
_MAX_SITEMAP_URLS = 50_000  # the protocol's limit for one sitemap

PageOutcome = Literal["fetched", "unchanged", "duplicate", "gone", "blocked", "failed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CrawlPlan:
    url: str
    mode: Literal["crawl", "sitemap", "page"]
    max_pages: int
    max_depth: int
    include: tuple[str, ...] = ()  # glob patterns (fnmatch) on the URL path, e.g. "/help/*"; empty = all
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Known:
    """What the last sync kept of a page, for conditional requests."""

    etag: str | None = None
    last_modified: str | None = None
    sha256: str | None = None  # of the content yielded last time


@dataclass(frozen=True, slots=True, kw_only=True)
class CrawledPage:
    url: str  # normalised: the page's same-site rel=canonical, else the final URL (a duplicate: its own)
    outcome: PageOutcome
    title: str = ""
    content: bytes = b""  # "fetched": an HTML page's main content as UTF-8 Markdown; PDF/DOCX raw
    content_type: str = ""  # MARKDOWN, PDF or DOCX
    sha256: str = ""  # hex of content ("unchanged": the known one)
    etag: str | None = None
    last_modified: str | None = None
    duplicate_of: str | None = None  # "duplicate": the URL first yielded with that content in this crawl
    status: int | None = None  # the final HTTP status, if a response came
    error: str = ""  # "failed", "blocked", "gone": the reason in words
    error_code: str = ""


def normalise_url(url: str) -> str | None:
    """``url`` as crawl results name it (http/https only, host lower-cased, default port and
    fragment dropped, credentials dropped, empty path as ``/``); None if it is not such a URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def _site(url: str) -> str:
    return urlsplit(url).netloc  # of a normalised URL: the host (and a non-default port)


def _path(url: str) -> str:
    return unquote(urlsplit(url).path)


def _file_type(url: str) -> str | None:
    return _FILES.get(posixpath.splitext(_path(url))[1].lower())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Gate:
    """One host's politeness: at most ``concurrency`` requests at once, ``delay_s`` between starts."""

    def __init__(self, *, concurrency: int, delay_s: float) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._next_at = 0.0
        self.delay_s = delay_s

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        async with self._slots:
            now = asyncio.get_running_loop().time()
            start = max(now, self._next_at)
            self._next_at = start + self.delay_s  # reserved before sleeping: waiters queue up in order
            if start > now:
                await asyncio.sleep(start - now)
            yield


@dataclass(frozen=True, slots=True)
class _Robots:
    rules: Protego | None  # None: no robots.txt, everything allowed
    refusal: str = ""  # robots.txt could not be read: nothing may be fetched, for this reason

    def blocked(self, url: str, *, user_agent: str) -> CrawledPage | None:
        # (A refusal stops the crawl before any page: see _Crawl._seed.)
        if self.rules is not None and not self.rules.can_fetch(url, user_agent):
            return CrawledPage(
                url=url,
                outcome="blocked",
                error="robots.txt disallows this page",
                error_code="robots_disallowed",
            )
        return None


@dataclass(frozen=True, slots=True)
class _Visit:
    requested: str
    depth: int
    page: CrawledPage
    final: str | None = None  # where the redirects ended
    links: tuple[str, ...] = ()


@dataclass(slots=True)
class _Frontier:
    """URLs waiting to be fetched, shallowest first (breadth-first), each URL admitted once."""

    seen: set[str] = field(default_factory=set)
    heap: list[tuple[int, int, str]] = field(default_factory=list)
    pushed: int = 0

    def push(self, url: str, depth: int) -> None:
        heapq.heappush(self.heap, (depth, self.pushed, url))
        self.pushed += 1

    def pop(self) -> tuple[str, int]:
        depth, _, url = heapq.heappop(self.heap)
        return url, depth


class Crawler:
    """Crawls one website source at a time (:meth:`crawl`); a crawler can serve many in turn."""

    def __init__(
        self,
        client: OutboundClient,
        parsers: ParserPool,
        *,
        user_agent: str,
        per_host_concurrency: int = 2,
        delay_s: float = 0.2,
        max_html_bytes: int = 5 * 1024 * 1024,
        max_file_bytes: int = 20 * 1024 * 1024,
        max_chars: int = 4_000_000,
    ) -> None:
        self._client = client
        self._parsers = parsers
        self._user_agent = user_agent
        self._concurrency = per_host_concurrency
        self._delay_s = delay_s
        self._max_html_bytes = max_html_bytes
        self._max_file_bytes = max_file_bytes
        self._max_chars = max_chars

    def crawl(
        self, plan: CrawlPlan, *, known: Mapping[str, Known] | None = None
    ) -> AsyncIterator[CrawledPage]:
        """The plan's pages as each is done. ``known``: the last sync's pages by URL; each is
        requested conditionally, within ``max_pages``."""
        return _Crawl(self, plan, known or {}).pages()


class _Crawl:
    """One crawl's state; its decisions (budget, dedupe, admission) are made in :meth:`pages` only,
    between fetches, so none of them races."""

    def __init__(self, crawler: Crawler, plan: CrawlPlan, known: Mapping[str, Known]) -> None:
        self._c = crawler
        self._plan = plan
        self._known = {n: k for url, k in known.items() if (n := normalise_url(url)) is not None}
        self._start = normalise_url(plan.url)
        self._host = _site(self._start) if self._start is not None else ""
        self._gate = _Gate(concurrency=crawler._concurrency, delay_s=crawler._delay_s)
        self._robots = _Robots(rules=None)
        self._frontier = _Frontier()
        self._taken = 0  # pages counted against max_pages: in flight or yielded
        self._yielded: set[str] = set()  # URLs yielded as a page (fetched or unchanged)
        self._by_sha: dict[str, str] = {}  # content hash -> the URL first yielded with it

    # --- the loop -----------------------------------------------------------------------------

    async def pages(self) -> AsyncIterator[CrawledPage]:
        start = self._start
        if start is None:
            yield CrawledPage(
                url=self._plan.url,
                outcome="failed",
                error="the source's URL is not an http or https URL",
                error_code="invalid_url",
            )
            return
        self._robots = await self._read_robots(start)
        ready = await self._seed(start)
        pending: set[asyncio.Task[_Visit]] = set()
        try:
            while True:
                while ready:
                    yield ready.pop(0)
                # Twice the host's concurrency in flight: one page is parsed while the next downloads.
                while self._frontier.heap and len(pending) < 2 * self._c._concurrency:
                    if self._taken >= self._plan.max_pages:
                        break
                    url, depth = self._frontier.pop()
                    self._taken += 1
                    pending.add(asyncio.create_task(self._visit(url, depth)))
                if not pending:
                    return
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    ready.extend(self._settle(task.result()))
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _seed(self, start: str) -> list[CrawledPage]:
        plan = self._plan
        if self._robots.refusal:
            # Nothing is requested, not even a sitemap; the known pages are listed so a sync keeps them.
            urls = list(dict.fromkeys((start, *self._known)))[: plan.max_pages]
            self._taken = len(urls)
            return [self._no_pages(url, self._robots.refusal, "robots_unavailable") for url in urls]
        ready: list[CrawledPage] = []
        if plan.mode != "sitemap":
            # The start page is the entry point even when the filters leave it out (see _settle).
            self._frontier.seen.add(start)
            if (blocked := self._robots.blocked(start, user_agent=self._c._user_agent)) is not None:
                ready.append(blocked)
            else:
                self._frontier.push(start, 0)
        for url in self._known:
            ready.extend(self._admit(url, 1, known=True))
        if plan.mode == "sitemap":
            root = _path(start) in ("", "/")
            roots = discover(start, self._robots.rules) if root else (start,)
            try:
                entries = await read_sitemaps(self._sitemap, roots, max_urls=_MAX_SITEMAP_URLS)
            except SitemapError as exc:
                self._taken += 1  # a failure like a page's, within max_pages
                return [*ready, self._no_pages(start, exc.message, exc.code)]
            if not entries:
                self._taken += 1
                found = "the site has no sitemap" if root else "the sitemap lists no pages"
                return [*ready, self._no_pages(start, found, "no_sitemap")]
            for entry in entries:
                ready.extend(self._admit(entry.url, 1))
        elif plan.mode == "crawl" and plan.max_depth >= 1:
            with contextlib.suppress(SitemapError):  # a broken sitemap: the links still lead everywhere
                for entry in await read_sitemaps(
                    self._sitemap, discover(start, self._robots.rules), max_urls=_MAX_SITEMAP_URLS
                ):
                    ready.extend(self._admit(entry.url, 1))
        return ready

    @staticmethod
    def _no_pages(url: str, why: str, code: str) -> CrawledPage:
        return CrawledPage(url=url, outcome="failed", error=why, error_code=code)

    def _admit(self, url: str, depth: int, *, known: bool = False) -> list[CrawledPage]:
        """Queue ``url`` if it is in the crawl's scope; a known page out of scope (``out_of_scope``:
        a sync drops what it kept of it), or any page robots.txt disallows, comes back "blocked"."""
        normal = normalise_url(url)
        if normal is None or normal in self._frontier.seen:
            return []
        self._frontier.seen.add(normal)
        if _site(normal) != self._host:
            return [self._out_of_scope(normal, "the page is not on the source's site")] if known else []
        if not self._in_scope(normal):
            return [self._out_of_scope(normal, "the source's filters leave this page out")] if known else []
        if (blocked := self._robots.blocked(normal, user_agent=self._c._user_agent)) is not None:
            return [blocked]
        self._frontier.push(normal, depth)
        return []

    @staticmethod
    def _out_of_scope(url: str, why: str) -> CrawledPage:
        return CrawledPage(url=url, outcome="blocked", error=why, error_code="out_of_scope")

    def _in_scope(self, url: str) -> bool:
        path = _path(url)
        if self._plan.include and not any(fnmatchcase(path, p) for p in self._plan.include):
            return False
        return not any(fnmatchcase(path, p) for p in self._plan.exclude)

    def _settle(self, visit: _Visit) -> list[CrawledPage]:
        """What a finished visit yields, now that this crawl's earlier pages are known."""
        page = visit.page
        ready: list[CrawledPage] = []
        if self._plan.mode == "crawl" and visit.depth < self._plan.max_depth:
            for link in visit.links:
                ready.extend(self._admit(link, visit.depth + 1))
        for url in (visit.final, page.url):
            if url is not None:
                self._frontier.seen.add(url)  # a redirect target or canonical URL is not fetched again
        entry_only = (
            self._plan.mode == "crawl"
            and visit.requested == self._start
            and page.outcome in ("fetched", "unchanged")
            and not self._in_scope(page.url)
        )
        if page.outcome == "blocked" or entry_only:
            self._taken -= 1  # not a page of the source: its place goes to another
            return [*ready, page] if page.outcome == "blocked" else ready
        if page.outcome in ("fetched", "unchanged"):
            if page.url in self._yielded:
                if visit.requested == page.url:
                    self._taken -= 1  # already yielded under this URL, through an alias's canonical
                    return ready
                page = self._duplicate(page, url=visit.final or visit.requested, of=page.url)
            elif (first := self._by_sha.get(page.sha256)) is not None and page.sha256:
                page = self._duplicate(page, url=page.url, of=first)
            else:
                self._yielded.add(page.url)
                if page.sha256:
                    self._by_sha[page.sha256] = page.url
        return [page, *ready]

    @staticmethod
    def _duplicate(page: CrawledPage, *, url: str, of: str) -> CrawledPage:
        return replace(page, url=url, outcome="duplicate", content=b"", duplicate_of=of)

    # --- requests -----------------------------------------------------------------------------

    async def _fetch(
        self,
        url: str,
        *,
        accept: Collection[str] | None,
        max_bytes: int,
        headers: dict[str, str] | None = None,
    ) -> Fetched:
        async with self._gate.turn():
            return await self._c._client.fetch(url, headers=headers, accept=accept, max_bytes=max_bytes)

    async def _read_robots(self, start: str) -> _Robots:
        parts = urlsplit(start)
        url = f"{parts.scheme}://{parts.netloc}/robots.txt"
        unreadable = "robots.txt could not be read ({}), so no page is fetched until it can be"
        try:
            fetched = await self._fetch(url, accept=None, max_bytes=_ROBOTS_MAX_BYTES)
        except OutboundRefused as exc:
            return _Robots(rules=None, refusal=unreadable.format(exc.message))
        if fetched.status == 200:
            rules = Protego.parse(fetched.body.decode("utf-8", errors="replace"))
            site_delay = rules.crawl_delay(self._c._user_agent)
            if site_delay is not None:
                self._gate.delay_s = max(self._gate.delay_s, min(float(site_delay), _MAX_CRAWL_DELAY_S))
            return _Robots(rules=rules)
        if 400 <= fetched.status < 500:
            return _Robots(rules=None)  # no robots.txt: the site sets no rules
        return _Robots(rules=None, refusal=unreadable.format(f"the server answered {fetched.status}"))

    async def _sitemap(self, url: str) -> bytes | None:
        normal = normalise_url(url)
        if normal is None or _site(normal) != self._host:
            return None  # only the source's own site is read
        try:
            fetched = await self._fetch(normal, accept=None, max_bytes=_SITEMAP_MAX_BYTES)
        except OutboundRefused:
            return None
        return fetched.body if fetched.status == 200 else None

    async def _visit(self, url: str, depth: int) -> _Visit:
        known = self._known.get(url)
        headers: dict[str, str] = {}
        if known is not None and known.etag:
            headers["If-None-Match"] = known.etag
        if known is not None and known.last_modified:
            headers["If-Modified-Since"] = known.last_modified
        limit = self._c._max_file_bytes if _file_type(url) else self._c._max_html_bytes
        try:
            fetched = await self._fetch(url, headers=headers or None, accept=ACCEPT, max_bytes=limit)
        except OutboundRefused as exc:
            page = CrawledPage(url=url, outcome="failed", error=exc.message, error_code=exc.code)
            return _Visit(requested=url, depth=depth, page=page)
        final = normalise_url(fetched.url) or url
        status = fetched.status
        links: tuple[str, ...] = ()
        if _site(final) != self._host:
            why = f"the page redirects to another site ({_site(final)})"
            page = CrawledPage(url=url, outcome="blocked", status=status, error=why, error_code="off_site")
        elif (blocked := self._robots.blocked(final, user_agent=self._c._user_agent)) is not None:
            page = replace(blocked, status=status)
        elif status == 304 and known is not None:
            page = CrawledPage(
                url=url,
                outcome="unchanged",
                sha256=known.sha256 or "",
                etag=fetched.headers.get("etag") or known.etag,
                last_modified=fetched.headers.get("last-modified") or known.last_modified,
                status=status,
            )
        elif status in (404, 410):
            why = f"the server answered {status}: the page is gone"
            page = CrawledPage(url=url, outcome="gone", status=status, error=why, error_code="gone")
        elif status != 200:
            why = f"the server answered {status}"
            page = CrawledPage(
                url=url, outcome="failed", status=status, error=why, error_code=f"http_{status}"
            )
        else:
            page, links = await self._content(fetched, requested=url, final=final, known=known)
        return _Visit(requested=url, depth=depth, page=page, final=final, links=links)

    async def _content(
        self, fetched: Fetched, *, requested: str, final: str, known: Known | None
    ) -> tuple[CrawledPage, tuple[str, ...]]:
        """A 200's page, and the links to follow from it."""
        media = fetched.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        answer = CrawledPage(
            url=final,
            outcome="fetched",
            etag=fetched.headers.get("etag"),
            last_modified=fetched.headers.get("last-modified"),
            status=fetched.status,
        )
        if media in _FILES.values():
            name = posixpath.basename(_path(final).rstrip("/")) or final
            return self._fetched(answer, fetched.body, content_type=media, title=name, known=known), ()
        limit = self._c._max_html_bytes
        if len(fetched.body) > limit:  # a .pdf URL that answered HTML was allowed the files' size
            why = f"the page is larger than {limit:,} bytes"
            return replace(answer, url=requested, outcome="failed", error=why, error_code="too_large"), ()
        try:
            web = await self._c._parsers.webpage(fetched.body, url=final, max_chars=self._c._max_chars)
        except ParseError as exc:
            return replace(
                answer, url=requested, outcome="failed", error=exc.message, error_code=exc.code
            ), ()
        links = () if web.nofollow else web.links
        canonical = normalise_url(web.canonical) if web.canonical is not None else None
        if canonical is not None and _site(canonical) == self._host:
            answer = replace(answer, url=canonical)
        if web.noindex:
            why = "the page asks not to be indexed (meta robots noindex)"
            return replace(answer, outcome="blocked", error=why, error_code="noindex"), links
        if not web.markdown.strip():
            why = "no main text was found on the page"
            return replace(answer, outcome="failed", error=why, error_code="extraction_empty"), links
        page = self._fetched(
            answer, web.markdown.encode(), content_type=MARKDOWN, title=web.title, known=known
        )
        return page, links

    @staticmethod
    def _fetched(
        answer: CrawledPage, content: bytes, *, content_type: str, title: str, known: Known | None
    ) -> CrawledPage:
        sha = _sha256(content)
        if known is not None and known.sha256 == sha:
            return replace(answer, outcome="unchanged", title=title, content_type=content_type, sha256=sha)
        return replace(answer, title=title, content=content, content_type=content_type, sha256=sha)
