"""The website crawler against a real site on loopback, a real SSRF-safe client and a real parser child."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Literal

import pytest

from obdal_common.formats import MARKDOWN, PDF
from obdal_common.outbound import OutboundClient, OutboundPolicy
from obdal_ingest.crawler import CrawledPage, Crawler, CrawlPlan, Known
from obdal_ingest.extraction import extract_webpage
from obdal_ingest.parser_pool import ParserPool
from obdal_ingest.sitemaps import SitemapEntry, SitemapError, parse_sitemap, read_sitemaps
from tests import website
from tests.website import CHROME, PDF_PATH, PRIVATE, TOPICS, Website, fact

AGENT = "ObdalBot/1.0 (+https://obdal.dev/bot)"
TIMEOUT_S = 1.5
COUNTED = ("fetched", "unchanged", "duplicate", "gone", "failed")


@pytest.fixture(scope="module")
def parsers() -> Iterator[ParserPool]:
    pool = ParserPool(timeout_s=30, memory_mb=1024)
    yield pool
    pool.close()


@pytest.fixture
async def client() -> AsyncIterator[OutboundClient]:
    outbound = OutboundClient(
        OutboundPolicy.from_setting("127.0.0.0/8", timeout_s=TIMEOUT_S), user_agent=AGENT
    )
    yield outbound
    await outbound.aclose()


@pytest.fixture
def crawler(client: OutboundClient, parsers: ParserPool) -> Crawler:
    return Crawler(
        client, parsers, user_agent=AGENT, per_host_concurrency=4, delay_s=0.0, max_html_bytes=1024 * 1024
    )


@pytest.fixture(scope="module")
def site() -> Iterator[Website]:
    with Website() as served:
        yield served


async def crawl(
    crawler: Crawler, plan: CrawlPlan, known: dict[str, Known] | None = None
) -> list[CrawledPage]:
    return [page async for page in crawler.crawl(plan, known=known)]


def plan(
    site: Website,
    path: str = "/",
    *,
    mode: Literal["crawl", "sitemap", "page"] = "crawl",
    max_pages: int = 1000,
    max_depth: int = 5,
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
) -> CrawlPlan:
    return CrawlPlan(
        url=site.url + path,
        mode=mode,
        max_pages=max_pages,
        max_depth=max_depth,
        include=include,
        exclude=exclude,
    )


def by(pages: list[CrawledPage], outcome: str) -> dict[str, CrawledPage]:
    return {page.url.removeprefix(_origin(page.url)): page for page in pages if page.outcome == outcome}


def _origin(url: str) -> str:
    return url[: url.index("/", len("http://"))]


def known_of(pages: list[CrawledPage]) -> dict[str, Known]:
    return {
        p.url: Known(etag=p.etag, last_modified=p.last_modified, sha256=p.sha256)
        for p in pages
        if p.outcome == "fetched"
    }


def page_requests(log: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """The requests for pages (not robots.txt or sitemaps)."""
    return [r for r in log if r[1] != "/robots.txt" and not r[1].startswith(("/sitemap", "/sitemaps/"))]


async def test_full_crawl_finds_every_public_page_and_only_the_main_content(
    site: Website, crawler: Crawler
) -> None:
    before = len(site.requests)
    pages: list[CrawledPage] = []
    async for page in crawler.crawl(plan(site)):
        if not pages:  # yielded as it completes, not once the whole site is done
            assert len(site.requests) - before < 30
        pages.append(page)
    public = site.public()
    assert len(public) == 6 * 17 + 1 + 6 + 1

    fetched = by(pages, "fetched")
    assert set(fetched) == set(public)
    assert Counter(p.outcome for p in pages) == {"fetched": len(public), "duplicate": 2, "blocked": 2}
    assert {p: page.title for p, page in fetched.items()} == public
    for t, topic in enumerate(TOPICS):
        for n in (1, 17):
            text = fetched[f"/{topic}/article-{n}"].content.decode()
            assert fact(t, n) in text
            assert text.startswith(f"# {topic.capitalize()} article {n}\n\n")
    for path, page in fetched.items():
        assert page.sha256
        assert page.etag
        assert page.last_modified
        assert page.status == 200
        if path != PDF_PATH:
            assert page.content_type == MARKDOWN
            assert not [chrome for chrome in CHROME if chrome in page.content.decode()], path

    # The article under a second URL collapses onto the first, with or without a canonical link.
    duplicates = by(pages, "duplicate")
    original = site.url + site.duplicate
    assert {p: d.duplicate_of for p, d in duplicates.items()} == {
        f"/print{site.duplicate}": original,
        f"/share{site.duplicate}": original,
    }
    # robots.txt: the private pages are reported, never requested.
    blocked = by(pages, "blocked")
    assert set(blocked) == set(PRIVATE)
    assert {b.error_code for b in blocked.values()} == {"robots_disallowed"}
    log = site.requests[before:]
    assert not [r for r in log if r[1].startswith("/private/")]
    assert [r for r in log if r[1] == "/robots.txt"] == [("GET", "/robots.txt", 200)]

    pdf = fetched[PDF_PATH]
    assert pdf.content_type == PDF
    assert pdf.content.startswith(b"%PDF-")
    assert pdf.sha256 == hashlib.sha256(pdf.content).hexdigest()
    assert pdf.title == "warranty-guide.pdf"

    # A second sync of the unchanged site: only conditional requests, every page a 304.
    mark = len(site.requests)
    again = await crawl(crawler, plan(site), known_of(pages))
    # (The home page answered 304: its links, to the private pages too, are not read again.)
    assert Counter(p.outcome for p in again) == {"unchanged": len(public)}
    assert {p: page.sha256 for p, page in by(again, "unchanged").items()} == {
        p: page.sha256 for p, page in fetched.items()
    }
    second = page_requests(site.requests[mark:])
    assert len(second) == len(public)
    assert {status for _, _, status in second} == {304}


async def test_sitemap_index_finds_the_same_pages(site: Website, crawler: Crawler) -> None:
    from_root = await crawl(crawler, plan(site, mode="sitemap"))
    assert set(by(from_root, "fetched")) == set(site.public())
    assert len(from_root) == len(site.public())

    one_topic = await crawl(crawler, plan(site, "/sitemaps/billing.xml", mode="sitemap"))
    assert set(by(one_topic, "fetched")) == {f"/billing/article-{n}" for n in range(1, 18)}
    assert len(one_topic) == 17


async def test_page_mode_fetches_one_page(site: Website, crawler: Crawler) -> None:
    before = len(site.requests)
    pages = await crawl(crawler, plan(site, "/shipping/article-5", mode="page"))
    assert [(p.url, p.outcome, p.title) for p in pages] == [
        (site.url + "/shipping/article-5", "fetched", "Shipping article 5 | Acme Help")
    ]
    assert fact(1, 5) in pages[0].content.decode()
    assert [path for _, path, _ in site.requests[before:]] == ["/robots.txt", "/shipping/article-5"]


async def test_max_pages_and_max_depth(site: Website, crawler: Crawler) -> None:
    before = len(site.requests)
    pages = await crawl(crawler, plan(site, max_pages=12))
    assert sum(p.outcome in COUNTED for p in pages) == 12
    assert len(page_requests(site.requests[before:])) == 12

    only_start = await crawl(crawler, plan(site, max_depth=0))
    assert [(p.url, p.outcome) for p in only_start] == [(site.url + "/", "fetched")]

    with Website(articles_per_topic=2, sitemap=False) as linked_only:
        one_hop = await crawl(crawler, plan(linked_only, max_depth=1))
        assert set(by(one_hop, "fetched")) == {"/", PDF_PATH, *(f"/{t}/" for t in TOPICS)}
        assert set(by(one_hop, "blocked")) == set(PRIVATE)
        two_hops = await crawl(crawler, plan(linked_only, max_depth=2))
        assert set(by(two_hops, "fetched")) == set(linked_only.public())


async def test_include_and_exclude_filter_paths(site: Website, crawler: Crawler) -> None:
    before = len(site.requests)
    pages = await crawl(crawler, plan(site, include=("/returns/*",), exclude=("/returns/article-2",)))
    expected = {"/returns/", *(f"/returns/article-{n}" for n in range(1, 18) if n != 2)}
    assert set(by(pages, "fetched")) == expected
    assert len(pages) == len(expected)
    requested = {path for _, path, _ in page_requests(site.requests[before:])}
    assert requested == expected | {"/"}  # the start page is the entry point, not a page of the source


async def test_redirects_and_traps_end_quickly(site: Website, crawler: Crawler) -> None:
    [landed] = await crawl(crawler, plan(site, website.REDIRECT_START, mode="page"))
    assert (landed.url, landed.outcome, landed.status) == (site.url + "/returns/article-2", "fetched", 200)
    assert fact(2, 2) in landed.content.decode()

    for path, code in (
        (website.REDIRECT_LOOP, "redirect_loop"),
        (website.NEVER_ENDING, "timeout"),
        (website.HUGE, "too_large"),
    ):
        started = time.monotonic()
        [page] = await crawl(crawler, plan(site, path, mode="page"))
        assert (page.url, page.outcome, page.error_code) == (site.url + path, "failed", code)
        assert page.error
        assert time.monotonic() - started < TIMEOUT_S + 1.5


async def test_noindex_page_is_not_kept_but_its_links_are_followed(crawler: Crawler) -> None:
    with Website(articles_per_topic=1, sitemap=False) as small:
        pages = await crawl(crawler, plan(small, website.DRAFT, max_depth=1, max_pages=8))
        assert [(p.url, p.error_code) for p in pages if p.outcome == "blocked"][:1] == [
            (small.url + website.DRAFT, "noindex")
        ]
        # The blocked page took no place: the 8 pages are the ones it links to.
        assert set(by(pages, "fetched")) == {"/", PDF_PATH, *(f"/{t}/" for t in TOPICS)}


async def test_politeness_per_host(client: OutboundClient, parsers: ParserPool) -> None:
    polite = Crawler(client, parsers, user_agent=AGENT, per_host_concurrency=2, delay_s=0.05)
    with Website(articles_per_topic=2) as small:
        pages = await crawl(polite, plan(small))
        assert len(by(pages, "fetched")) == len(small.public())
        starts = small.request_starts
        # Spaced as the client sent them, give or take the loopback's jitter.
        assert starts[-1] - starts[0] >= 0.95 * 0.05 * (len(starts) - 1)
        assert min(b - a for a, b in itertools.pairwise(starts)) >= 0.025
        assert small.most_at_once <= 2
    with Website(articles_per_topic=1, sitemap=False, crawl_delay=0.3) as slow:
        await crawl(polite, plan(slow, max_pages=3))
        starts = slow.request_starts
        assert len(starts) == 1 + 1 + 3  # robots.txt, /sitemap.xml (a 404), 3 pages
        # (After robots.txt, which said so.)
        assert min(b - a for a, b in itertools.pairwise(starts[1:])) >= 0.29


async def test_unreadable_robots_txt_fetches_nothing(crawler: Crawler) -> None:
    with Website(articles_per_topic=1, robots_status=503) as down:
        known = {down.url + "/orders/article-1": Known(etag='"x"')}
        pages = await crawl(crawler, plan(down), known)
        # Failed, not blocked: an outage, so a sync keeps the pages it has.
        assert [(p.url, p.outcome, p.error_code) for p in pages] == [
            (down.url + "/", "failed", "robots_unavailable"),
            (down.url + "/orders/article-1", "failed", "robots_unavailable"),
        ]
        assert "503" in pages[0].error
        assert [path for _, path, _ in down.requests] == ["/robots.txt"]


async def test_resync_after_change_remove_and_add(crawler: Crawler) -> None:
    with Website(articles_per_topic=3) as small:
        first = await crawl(crawler, plan(small))
        assert len(by(first, "fetched")) == len(small.public())

        small.change("/orders/article-2", "Orders for article 2 now ship within 48 hours.")
        small.remove("/billing/article-3", gone=True)
        small.add(
            "/returns/holiday-returns",
            "Holiday returns",
            "Gifts bought in December can be returned until 31 January.",
        )
        mark = len(small.requests)
        second = await crawl(crawler, plan(small), known_of(first))

        fetched = by(second, "fetched")
        assert set(fetched) == {"/orders/article-2", "/returns/holiday-returns"}
        assert "now ship within 48 hours" in fetched["/orders/article-2"].content.decode()
        assert fetched["/returns/holiday-returns"].title == "Holiday returns | Acme Help"
        gone = by(second, "gone")
        assert {(p, g.status) for p, g in gone.items()} == {("/billing/article-3", 410)}
        unchanged = set(by(second, "unchanged"))
        assert unchanged == set(small.public()) - set(fetched)
        assert Counter(p.outcome for p in second) == {"fetched": 2, "gone": 1, "unchanged": len(unchanged)}
        # The new page's topic index answered 200 (its menu changed) yet its main text did not.
        statuses = {path: status for _, path, status in small.requests[mark:]}
        assert statuses["/returns/"] == 200
        assert "/returns/" in unchanged


def _urlset(urls: list[str]) -> bytes:
    entries = "".join(f"<url><loc>{u}</loc><lastmod>2026-11-30</lastmod></url>" for u in urls)
    return f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'.encode()


def _index(urls: list[str]) -> bytes:
    entries = "".join(f"<sitemap><loc>{u}</loc></sitemap>" for u in urls)
    return (
        f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</sitemapindex>'.encode()
    )


def test_sitemaps_are_parsed_within_bounds() -> None:
    urls = [f"https://help.example/a{n}" for n in range(10)]
    parsed = parse_sitemap(_urlset(urls), url="https://help.example/sitemap.xml", max_urls=4)
    assert parsed.pages == tuple(SitemapEntry(url=u, lastmod="2026-11-30") for u in urls[:4])
    assert parse_sitemap(
        gzip.compress(_urlset(urls)), url="https://help.example/s.xml.gz", max_urls=99
    ).pages[-1] == SitemapEntry(url=urls[-1], lastmod="2026-11-30")

    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        b"<urlset><url><loc>&lol2;</loc></url></urlset>"
    )
    with pytest.raises(SitemapError, match="forbidden XML"):
        parse_sitemap(laughs, url="https://help.example/sitemap.xml", max_urls=10)
    bomb = gzip.compress(b"<urlset>" + b" " * 5_000_000 + b"</urlset>")
    with pytest.raises(SitemapError, match="larger than 1,000,000 bytes once decompressed"):
        parse_sitemap(bomb, url="https://help.example/s.xml.gz", max_urls=10, max_bytes=1_000_000)
    with pytest.raises(SitemapError, match="not well-formed"):
        parse_sitemap(b"<html><body>not a sitemap", url="https://help.example/sitemap.xml", max_urls=10)


async def test_sitemap_indexes_nest_at_most_three_deep() -> None:
    served = {
        "https://help.example/1.xml": _index(["https://help.example/2.xml"]),
        "https://help.example/2.xml": _index(["https://help.example/3.xml", "https://help.example/1.xml"]),
        "https://help.example/3.xml": _index(["https://help.example/4.xml"]),
        "https://help.example/4.xml": _urlset(["https://help.example/too-deep"]),
    }
    asked: list[str] = []

    async def fetch(url: str) -> bytes | None:
        asked.append(url)
        return served.get(url)

    assert await read_sitemaps(fetch, ("https://help.example/1.xml",), max_urls=10) == []
    assert asked == ["https://help.example/1.xml", "https://help.example/2.xml", "https://help.example/3.xml"]
    served["https://help.example/3.xml"] = _urlset([f"https://help.example/p{n}" for n in range(30)])
    found = await read_sitemaps(fetch, ("https://help.example/1.xml",), max_urls=25)
    assert [e.url for e in found] == [f"https://help.example/p{n}" for n in range(25)]


def test_webpage_extraction_reads_the_declared_charset_and_robots_meta() -> None:
    page = (
        '<html><head><meta charset="windows-1252"><title>Caf\xe9 menu</title>'
        '<meta name="ROBOTS" content="noindex, nofollow"><link rel="canonical" href="/menu#top"></head>'
        "<body><article><h1>Caf\xe9</h1><p>Our caf\xe9 opens at 8 o'clock every morning of the week.</p>"
        '<p><a href="/a#x">A</a> <a href="b">B</a> <a href="/a">A again</a> <a href="mailto:x@y">mail</a></p>'
        "</article></body></html>"
    ).encode("cp1252")
    web = extract_webpage(page, url="https://shop.example/docs/", max_chars=1000)
    assert web.title == "Caf\xe9 menu"
    assert "Our caf\xe9 opens at 8 o'clock" in web.markdown
    assert web.canonical == "https://shop.example/menu"
    assert web.links == ("https://shop.example/a", "https://shop.example/docs/b")
    assert (web.noindex, web.nofollow) == (True, True)
    assert len(extract_webpage(page, url="https://shop.example/", max_chars=10).markdown) <= 10
