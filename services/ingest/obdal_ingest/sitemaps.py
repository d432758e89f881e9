"""Sitemaps: the page URLs a website lists, read without trusting its XML.

A sitemap is XML from the website, parsed in the worker: defusedxml refuses entity
expansion and external references (billion laughs, XXE), a gzipped sitemap is
decompressed only up to a bound (a gzip bomb stops there), an index may nest at most
:data:`MAX_DEPTH` levels and the whole walk yields at most ``max_urls`` URLs, so a
hostile or huge site costs a bounded amount of memory and requests.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from defusedxml import DefusedXmlException  # type: ignore[import-untyped]
from defusedxml.ElementTree import iterparse  # type: ignore[import-untyped]
from protego import Protego

from obdal_common.errors import UnprocessableContent

__all__ = [
    "MAX_DEPTH",
    "MAX_XML_BYTES",
    "Sitemap",
    "SitemapEntry",
    "SitemapError",
    "discover",
    "parse_sitemap",
    "read_sitemaps",
]

MAX_DEPTH = 3  # an index of indexes of sitemaps, no deeper
MAX_XML_BYTES = 50 * 1024 * 1024  # the protocol's own limit for one uncompressed sitemap
_GZIP_MAGIC = b"\x1f\x8b"


class SitemapError(UnprocessableContent):
    """The sitemap cannot be read (not XML, not a sitemap, or too large once decompressed)."""

    default_code = "sitemap_unreadable"


@dataclass(frozen=True, slots=True)
class SitemapEntry:
    url: str
    lastmod: str | None = None  # as the sitemap wrote it (W3C datetime)


@dataclass(frozen=True, slots=True)
class Sitemap:
    pages: tuple[SitemapEntry, ...]  # a <urlset>'s <url> entries
    sitemaps: tuple[str, ...]  # a <sitemapindex>'s child sitemaps


def _gunzip(data: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise SitemapError(f"the gzipped sitemap is corrupt ({exc})") from None
    if len(out) > max_bytes:
        raise SitemapError(f"the sitemap is larger than {max_bytes:,} bytes once decompressed")
    return out


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]  # sitemaps namespace their tags; the local name is what counts


def _entries(xml: bytes, base: str) -> Iterator[tuple[str, SitemapEntry]]:
    # (kind, entry) per <url> or <sitemap>, streamed: a long sitemap is never a whole tree in memory.
    try:
        for _, element in iterparse(io.BytesIO(xml), events=("end",), forbid_dtd=True):
            kind = _local(element.tag)
            if kind not in ("url", "sitemap"):
                continue
            loc = lastmod = None
            for child in element:
                name = _local(child.tag)
                if name == "loc" and child.text:
                    loc = child.text.strip()
                elif name == "lastmod" and child.text:
                    lastmod = child.text.strip()
            element.clear()
            if loc:
                yield kind, SitemapEntry(url=urljoin(base, loc), lastmod=lastmod)
    except DefusedXmlException as exc:
        raise SitemapError(f"the sitemap uses forbidden XML features ({type(exc).__name__})") from None
    except SyntaxError as exc:  # xml.etree's ParseError
        raise SitemapError(f"the sitemap is not well-formed XML ({exc})") from None


def parse_sitemap(data: bytes, *, url: str, max_urls: int, max_bytes: int = MAX_XML_BYTES) -> Sitemap:
    """One sitemap or sitemap index (gzipped or not): at most ``max_urls`` entries of each kind."""
    if data[:2] == _GZIP_MAGIC:
        data = _gunzip(data, max_bytes)
    elif len(data) > max_bytes:
        raise SitemapError(f"the sitemap is larger than {max_bytes:,} bytes")
    pages: list[SitemapEntry] = []
    sitemaps: list[str] = []
    for kind, entry in _entries(data, url):
        if kind == "url" and len(pages) < max_urls:
            pages.append(entry)
        elif kind == "sitemap" and len(sitemaps) < max_urls:
            sitemaps.append(entry.url)
        if len(pages) >= max_urls and len(sitemaps) >= max_urls:
            break
    return Sitemap(pages=tuple(pages), sitemaps=tuple(sitemaps))


def discover(site: str, robots: Protego | None) -> tuple[str, ...]:
    """Where a site's sitemaps are: its robots.txt ``Sitemap:`` lines, else ``/sitemap.xml``."""
    listed = tuple(urljoin(site, s.strip()) for s in robots.sitemaps) if robots is not None else ()
    if listed:
        return tuple(dict.fromkeys(listed))
    parts = urlsplit(site)
    return (f"{parts.scheme}://{parts.netloc}/sitemap.xml",)


async def read_sitemaps(
    fetch: Callable[[str], Awaitable[bytes | None]],
    roots: tuple[str, ...],
    *,
    max_urls: int,
    max_bytes: int = MAX_XML_BYTES,
) -> list[SitemapEntry]:
    """The pages of ``roots`` and of the sitemaps they index (nested at most :data:`MAX_DEPTH`
    deep), each URL once, at most ``max_urls``. ``fetch`` gets a sitemap's bytes, or None when it
    cannot (missing, refused): that sitemap is skipped. :class:`SitemapError` only if none of them
    was readable and one was not a sitemap."""
    found: dict[str, SitemapEntry] = {}
    visited: set[str] = set()
    level = list(dict.fromkeys(roots))
    errors: list[SitemapError] = []
    read_any = False
    for _ in range(MAX_DEPTH):
        children: list[str] = []
        for url in level:
            if url in visited or len(found) >= max_urls:
                continue
            visited.add(url)
            data = await fetch(url)
            if data is None:
                continue
            try:
                sitemap = parse_sitemap(data, url=url, max_urls=max_urls - len(found), max_bytes=max_bytes)
            except SitemapError as exc:
                errors.append(exc)
                continue
            read_any = True
            for entry in sitemap.pages:
                found.setdefault(entry.url, entry)
            children.extend(sitemap.sitemaps)
        level = [c for c in dict.fromkeys(children) if c not in visited]
        if not level:
            break
    if not read_any and errors:
        raise errors[0]
    return list(found.values())[:max_urls]
