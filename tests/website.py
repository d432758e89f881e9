"""A real help-center website on loopback, for the crawler's tests and the bench.

Every page has what real sites have around their content (a header with a navigation menu,
a cookie banner, a footer, a sidebar) and an ``<article>`` holding distinct facts, so a test
can tell the main content from the chrome and check answers. It also has the traps a crawler
meets: robots.txt, a sitemap index, redirect chains and loops, a page that never ends, a 50 MB
page, the same article under two URLs, a PDF, and conditional requests (ETag, Last-Modified).
"""

from __future__ import annotations

import email.utils
import hashlib
import html
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import ClassVar

from obdal.servers import free_port
from tests import documents

__all__ = [
    "CHROME",
    "DRAFT",
    "PDF_PATH",
    "PRIVATE",
    "TOPICS",
    "Website",
    "fact",
]

TOPICS = ("orders", "shipping", "returns", "billing", "accounts", "warranty")
PDF_PATH = "/files/warranty-guide.pdf"
PDF_FACT = "The extended warranty for every product lasts 36 months."
PRIVATE = ("/private/staff-handbook", "/private/salaries")
# Text that appears only in the chrome (menu, cookie banner, footer, sidebar): never in extracted content.
CHROME = (
    "Acme Help Center menu",
    "We use cookies to improve your experience",
    "Accept all cookies",
    "Copyright Acme Corporation, all rights reserved",
    "Other articles in this topic",
)
DRAFT = "/drafts/next-season"  # meta robots noindex, linked from nowhere
REDIRECT_START = "/old/start"
REDIRECT_LOOP = "/loop/a"
NEVER_ENDING = "/slow/forever"
HUGE = "/huge/page"
HUGE_BYTES = 50 * 1024 * 1024
PRINT_PREFIX = "/print"  # the same article again, no canonical link
SHARE_PREFIX = "/share"  # the same article again, with a canonical link to the original
_CHUNK = 64 * 1024


def fact(topic: int, article: int) -> str:
    """The fact only that article states."""
    days = 14 + (7 * topic + 3 * article) % 61
    return f"The return window for topic-{topic} article {article} is {days} days."


@dataclass(slots=True)
class _Article:
    title: str
    text: str
    topic: str
    modified: float


class Website:
    """A help center served by :class:`ThreadingHTTPServer` on ``127.0.0.1`` in a daemon thread.

    ``sitemap=False``: no sitemap (nor its robots.txt line), so only links lead to pages;
    ``robots_status``: what robots.txt answers (a 5xx: the site cannot say what may be crawled);
    ``crawl_delay``: the robots.txt ``Crawl-delay`` it asks for.
    """

    def __init__(
        self,
        *,
        articles_per_topic: int = 17,
        sitemap: bool = True,
        robots_status: int = 200,
        crawl_delay: float | None = None,
    ) -> None:
        self._sitemaps = sitemap
        self._robots_status = robots_status
        self._crawl_delay = crawl_delay
        self._lock = threading.Lock()
        self._log: list[tuple[str, str, int]] = []
        self._starts: list[float] = []  # time.monotonic() as each connection was taken up
        self._active = 0
        self._most_active = 0
        self._stopping = threading.Event()
        self._started = float(int(time.time()) - 86_400)  # a day ago, whole seconds (HTTP dates)
        self._articles: dict[str, _Article] = {}
        self._gone: dict[str, int] = {}  # removed path -> 404 or 410
        for t, topic in enumerate(TOPICS):
            for n in range(1, articles_per_topic + 1):
                self._articles[f"/{topic}/article-{n}"] = _Article(
                    title=f"{topic.capitalize()} article {n}",
                    text=(
                        f"{fact(t, n)} Customers asking about {topic} usually want this answer first."
                        f"\n\nOrders for topic-{t} article {n} are packed at warehouse W-{t}{n:03d}."
                        " Our support team answers every message within one working day."
                    ),
                    topic=topic,
                    modified=self._started,
                )
        self._pdf = documents.pdf([PDF_FACT + " " + documents.FILLER * 3], title="Warranty guide")
        self._port = free_port()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def __enter__(self) -> Website:
        site = self

        class Handler(_Handler):
            website: ClassVar[Website] = site

        server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        # Handler threads are joined on close (the never-ending page stops once told to).
        server.daemon_threads = False
        server.block_on_close = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="website", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    # --- what tests read ---------------------------------------------------------------------

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """Every request answered so far: (method, path, status)."""
        with self._lock:
            return list(self._log)

    @property
    def request_starts(self) -> list[float]:
        """When each request began (``time.monotonic()``), in order."""
        with self._lock:
            return list(self._starts)

    @property
    def most_at_once(self) -> int:
        """The most requests the site was answering at the same time."""
        with self._lock:
            return self._most_active

    def public(self) -> dict[str, str]:
        """Every public page a crawl should yield, path -> title (the home page, topic indexes,
        articles and the PDF; not the duplicates, redirects or traps)."""
        with self._lock:
            pages = {"/": "Acme Help Center"}
            pages.update({f"/{t}/": f"{t.capitalize()} | Acme Help" for t in TOPICS})
            pages.update({path: f"{a.title} | Acme Help" for path, a in self._articles.items()})
            pages[PDF_PATH] = "warranty-guide.pdf"
            return pages

    def article_paths(self) -> list[str]:
        """The articles' paths (not the home page, topic indexes or the PDF)."""
        with self._lock:
            return list(self._articles)

    def text(self, path: str) -> str:
        """The article's main text as served now (its paragraphs, blank lines between them)."""
        with self._lock:
            return self._articles[path].text

    @property
    def duplicate(self) -> str:
        """The article served again under /print/ (no canonical) and /share/ (canonical)."""
        return f"/{TOPICS[0]}/article-1"

    # --- mutations ---------------------------------------------------------------------------

    def change(self, path: str, text: str) -> None:
        with self._lock:
            article = self._articles[path]
            article.text = text
            article.modified = self._bump(article.modified)

    def remove(self, path: str, *, gone: bool = False) -> None:
        """The article answers 404 from now on (410 with ``gone``), and leaves its index and sitemap."""
        with self._lock:
            del self._articles[path]
            self._gone[path] = 410 if gone else 404

    def add(self, path: str, title: str, text: str) -> None:
        """A new article at ``/<topic>/<slug>``, linked from its topic's index and in its sitemap."""
        topic = path.strip("/").split("/")[0]
        if topic not in TOPICS:
            raise ValueError(f"{path} is not under a topic ({', '.join(TOPICS)})")
        with self._lock:
            self._gone.pop(path, None)
            self._articles[path] = _Article(title=title, text=text, topic=topic, modified=self._bump(0.0))

    def _bump(self, previous: float) -> float:
        # Last-Modified has one-second resolution: a change must move it.
        return float(max(int(time.time()), int(previous) + 1))

    # --- pages -------------------------------------------------------------------------------

    def _page(self, *, title: str, main: str, topic: str | None, canonical: str | None = None) -> bytes:
        menu = "".join(f'<li><a href="/{t}/">{t.capitalize()}</a></li>' for t in TOPICS)
        sidebar = ""
        if topic is not None:
            items = "".join(
                f'<li><a href="{html.escape(p)}">{html.escape(a.title)}</a></li>'
                for p, a in self._articles.items()
                if a.topic == topic
            )
            sidebar = (
                '<aside class="sidebar"><nav aria-label="Articles">'
                f"<h2>Other articles in this topic</h2><ul>{items}</ul></nav></aside>"
            )
        link = f'<link rel="canonical" href="{html.escape(canonical)}">' if canonical else ""
        return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>{link}
<script>window.analytics = {{"site": "acme"}};</script><style>body {{ font-family: sans-serif }}</style>
</head><body>
<header class="site-header"><div class="logo">Acme Help Center menu</div>
<nav class="menu" role="navigation"><ul><li><a href="/">Home</a></li>{menu}</ul></nav></header>
<div id="cookie-banner" class="cookie-banner cookie-consent" role="dialog">
<p>We use cookies to improve your experience.</p><button>Accept all cookies</button></div>
<div class="layout">{sidebar}
<main id="content"><article>{main}</article></main></div>
<footer class="site-footer"><p>Copyright Acme Corporation, all rights reserved.</p>
<p><a href="/">Home</a> <a href="{PDF_PATH}">Warranty guide (PDF)</a></p></footer>
</body></html>""".encode()

    def _home(self) -> bytes:
        topics = "".join(f'<li><a href="/{t}/">Help with {t}</a></li>' for t in TOPICS)
        private = "".join(f'<li><a href="{p}">Staff only</a></li>' for p in PRIVATE)
        main = (
            "<h1>Welcome to the Acme Help Center</h1>"
            "<p>Acme sells kitchen appliances in twelve countries. This help center answers questions"
            " about orders, shipping, returns, billing, accounts and warranties, written by our"
            " support team and updated every week.</p>"
            f"<h2>Browse by topic</h2><ul>{topics}</ul>"
            f'<p>Read the <a href="{PDF_PATH}">warranty guide</a> before you contact us.</p>'
            f"<ul>{private}</ul>"
        )
        return self._page(title="Acme Help Center", main=main, topic=None)

    def _index(self, topic: str) -> bytes:
        main = (
            f"<h1>Help with {topic}</h1>"
            f"<p>Everything about {topic} at Acme: the articles in the menu beside this text answer the"
            " questions our customers ask most, and our support team keeps them up to date.</p>"
            f"<p>If no article answers your question about {topic}, write to our support team and we"
            " answer within one working day.</p>"
        )
        return self._page(title=f"{topic.capitalize()} | Acme Help", main=main, topic=topic)

    def _article(self, path: str, article: _Article, *, canonical: str | None = None) -> bytes:
        paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in article.text.split("\n\n"))
        extra = ""
        if path == self.duplicate and canonical is None:
            extra = (
                f'<p><a href="{PRINT_PREFIX}{path}">Print this article</a> or'
                f' <a href="{SHARE_PREFIX}{path}">share it</a>.</p>'
            )
        main = (
            f"<h1>{html.escape(article.title)}</h1>{paragraphs}"
            f"<h2>Still need help?</h2><p>Contact the Acme support team about {article.topic}.</p>{extra}"
        )
        return self._page(
            title=f"{article.title} | Acme Help", main=main, topic=article.topic, canonical=canonical
        )

    def _sitemap_index(self) -> bytes:
        entries = "".join(
            f"<sitemap><loc>{self.url}/sitemaps/{name}.xml</loc></sitemap>" for name in ("pages", *TOPICS)
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</sitemapindex>'
        ).encode()

    def _sitemap(self, name: str) -> bytes | None:
        if name == "pages":
            paths = ["/", *(f"/{t}/" for t in TOPICS), PDF_PATH]
            stamps = [self._started] * len(paths)
        elif name in TOPICS:
            chosen = [(p, a) for p, a in self._articles.items() if a.topic == name]
            paths = [p for p, _ in chosen]
            stamps = [a.modified for _, a in chosen]
        else:
            return None
        entries = "".join(
            f"<url><loc>{self.url}{p}</loc><lastmod>{time.strftime('%Y-%m-%d', time.gmtime(m))}</lastmod>"
            "</url>"
            for p, m in zip(paths, stamps, strict=True)
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'
        ).encode()

    def _robots(self) -> bytes:
        delay = f"Crawl-delay: {self._crawl_delay:g}\n" if self._crawl_delay is not None else ""
        listed = f"\nSitemap: {self.url}/sitemap.xml\n" if self._sitemaps else ""
        return f"User-agent: *\nDisallow: /private/\n{delay}{listed}".encode()

    def resolve(self, path: str) -> tuple[int, str, bytes, float] | tuple[int, str]:
        """What ``path`` answers: (200, content type, body, modified) or (status, redirect target or "")."""
        with self._lock:
            if path == "/":
                return 200, "text/html; charset=utf-8", self._home(), self._started
            if path == "/robots.txt":
                if self._robots_status != 200:
                    return self._robots_status, ""
                return 200, "text/plain", self._robots(), self._started
            if path == "/sitemap.xml" and self._sitemaps:
                return 200, "application/xml", self._sitemap_index(), self._started
            if path.startswith("/sitemaps/") and path.endswith(".xml") and self._sitemaps:
                body = self._sitemap(path.removeprefix("/sitemaps/").removesuffix(".xml"))
                if body is not None:
                    return 200, "application/xml", body, self._started
            if path == PDF_PATH:
                return 200, "application/pdf", self._pdf, self._started
            if path.startswith("/") and path.strip("/") in TOPICS:
                if path.endswith("/"):
                    return 200, "text/html; charset=utf-8", self._index(path.strip("/")), self._started
                return 301, path + "/"
            if path == DRAFT:
                main = "<h1>Next season</h1><p>Our next season's catalogue, not public yet.</p>"
                body = self._page(title="Draft", main=main, topic=None)
                noindex = b'<meta name="robots" content="noindex"><title>'
                return 200, "text/html", body.replace(b"<title>", noindex, 1), self._started
            if path in PRIVATE:
                main = "<h1>Staff only</h1><p>Salaries and the staff handbook: never to be crawled.</p>"
                return 200, "text/html", self._page(title="Private", main=main, topic=None), self._started
            hops = {
                REDIRECT_START: "/old/step-2",
                "/old/step-2": "/old/step-3",
                "/old/step-3": "/returns/article-2",
            }
            if path in hops:
                return 301 if path == REDIRECT_START else 302, hops[path]
            if path == REDIRECT_LOOP:
                return 302, "/loop/b"
            if path == "/loop/b":
                return 302, REDIRECT_LOOP
            for prefix in (PRINT_PREFIX, SHARE_PREFIX):
                original = path.removeprefix(prefix)
                if path.startswith(prefix + "/") and original in self._articles:
                    article = self._articles[original]
                    canonical = f"{self.url}{original}" if prefix == SHARE_PREFIX else None
                    body = self._article(original, article, canonical=canonical)
                    return 200, "text/html; charset=utf-8", body, article.modified
            if path in self._articles:
                article = self._articles[path]
                return 200, "text/html; charset=utf-8", self._article(path, article), article.modified
            return self._gone.get(path, 404), ""


class _Handler(BaseHTTPRequestHandler):
    website: ClassVar[Website]
    timeout = 10  # a client that connects and says nothing does not hold a thread for ever

    def handle(self) -> None:
        site = self.website
        with site._lock:
            site._starts.append(time.monotonic())
            site._active += 1
            site._most_active = max(site._most_active, site._active)
        try:
            super().handle()
        finally:
            with site._lock:
                site._active -= 1

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        status = code.value if isinstance(code, HTTPStatus) else int(code)
        with self.website._lock:
            self.website._log.append((self.command, self.path, status))

    def log_message(self, format: str, *args: object) -> None:
        pass  # the request log above is the record; nothing on stderr

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == NEVER_ENDING:
            self._stream(total=None, chunk_bytes=256, delay_s=0.05)
            return
        if path == HUGE:
            self._stream(total=HUGE_BYTES, chunk_bytes=_CHUNK, delay_s=0.0)
            return
        answer = self.website.resolve(path)
        if len(answer) == 2:
            status, target = answer
            self.send_response(status)
            if target:
                self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status, content_type, body, modified = answer
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        if self._not_modified(etag, modified):
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", email.utils.formatdate(modified, usegmt=True))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _not_modified(self, etag: str, modified: float) -> bool:
        match = self.headers.get("If-None-Match")
        if match is not None:
            return etag in (t.strip() for t in match.split(","))
        since = self.headers.get("If-Modified-Since")
        if since is None:
            return False
        try:
            return int(modified) <= email.utils.parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return False

    def _stream(self, *, total: int | None, chunk_bytes: int, delay_s: float) -> None:
        # Generated as it is sent: never held in memory, ends when the client goes or the site stops.
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        if total is not None:
            self.send_header("Content-Length", str(total))
        self.end_headers()
        chunk = (b"<p>more of a page that goes on</p>\n" * (chunk_bytes // 34 + 1))[:chunk_bytes]
        sent = 0
        try:
            while not self.website._stopping.is_set() and (total is None or sent < total):
                piece = chunk if total is None else chunk[: total - sent]
                self.wfile.write(piece)
                sent += len(piece)
                if delay_s:
                    self.website._stopping.wait(delay_s)
        except OSError:
            pass  # the client stopped reading (or stalled past the socket timeout): what these pages are for
