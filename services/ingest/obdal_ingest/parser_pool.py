"""Parsing in a separate process: a hostile file can hang, exhaust memory or crash it, never the worker.

A PDF or DOCX parser, or trafilatura reading a crawled web page, is a large body
of code fed with whatever a client uploaded or a website served. Each file is
parsed (and chunked), and each crawled page's main content extracted, in a child
process with a memory ceiling and a time limit; a child that runs over is killed
and replaced, and the file or page ends ``failed`` with the reason, while the
ingest worker carries on.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from obdal_common.processes import die_with_parent
from obdal_ingest.chunking import TextChunk, chunk_text
from obdal_ingest.extraction import WebPage, extract_webpage, load_extractor
from obdal_ingest.parsing import ParseError, load_parsers, parse

__all__ = ["Extracted", "ParserPool", "TooManyChunks", "extract"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class TooManyChunks(ParseError):
    """The file would become more chunks than one file may (``OBDAL_MAX_FILE_CHUNKS``)."""

    default_code = "too_many_chunks"


@dataclass(frozen=True, slots=True)
class Extracted:
    title: str
    pages: int | None
    chunks: list[TextChunk]


def extract(
    data: bytes,
    *,
    content_type: str,
    max_pages: int,
    target_tokens: int,
    overlap_tokens: int,
    max_chars: int | None = None,
    max_chunks: int | None = None,
) -> Extracted:
    """Parse and chunk one file (what runs in the child process), refusing it here, before any
    chunk is embedded, if it holds more than ``max_chars`` of text or makes more than ``max_chunks``."""
    document = parse(data, content_type=content_type, max_pages=max_pages, max_chars=max_chars)
    chunks = chunk_text(document.text, target_tokens=target_tokens, overlap_tokens=overlap_tokens)
    if max_chunks is not None and len(chunks) > max_chunks:
        raise TooManyChunks(
            f"the file would become {len(chunks):,} chunks, more than the {max_chunks:,} allowed for one"
            " file (OBDAL_MAX_FILE_CHUNKS); split it into smaller files"
        )
    return Extracted(title=document.title, pages=document.pages, chunks=chunks)


def _prepare_child(limit_bytes: int, worker_pid: int) -> None:
    # The parser dies with the worker, even a SIGKILLed one, and even one killed while this child
    # was still importing. The pool starts it from the event loop's thread, which lives as long as the worker.
    die_with_parent(worker_pid)
    # Decompression bombs and runaway parsers hit this ceiling (MemoryError) instead of the machine's.
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    load_parsers()  # imports pypdf, python-docx and selectolax before the first file, not during it
    load_extractor()  # and trafilatura (with lxml) before the first crawled page


class ParserPool:
    """A child process that runs :func:`extract` and :func:`extract_webpage`, with a timeout and a
    memory limit.

    One child: the ingest worker handles one job at a time (scale with worker replicas). Calls take
    turns (a crawl makes several at once), so each call's time limit counts its own parsing only.
    """

    def __init__(self, *, timeout_s: float, memory_mb: int) -> None:
        self._timeout_s = timeout_s
        self._memory_bytes = memory_mb * 1024 * 1024
        self._pool: ProcessPoolExecutor | None = None  # started with the first file, not at start-up
        self._turn = asyncio.Lock()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: a fork of this multi-threaded, event-loop process could inherit held locks.
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_prepare_child,
            initargs=(self._memory_bytes, os.getpid()),
        )

    def _stop(self, *, wait: bool) -> None:
        if self._pool is None:
            return
        # A running task cannot be cancelled: kill the pool's own children, and only those.
        for process in list((self._pool._processes or {}).values()):
            process.kill()
        self._pool.shutdown(wait=wait, cancel_futures=True)
        self._pool = None

    async def extract(
        self,
        data: bytes,
        *,
        content_type: str,
        max_pages: int,
        target_tokens: int,
        overlap_tokens: int,
        max_chars: int | None = None,
        max_chunks: int | None = None,
    ) -> Extracted:
        """:func:`extract` in a child; :class:`ParseError` if it fails, runs out of time or memory."""
        return await self._run(
            extract,
            data,
            content_type=content_type,
            max_pages=max_pages,
            target_tokens=target_tokens,
            overlap_tokens=overlap_tokens,
            max_chars=max_chars,
            max_chunks=max_chunks,
        )

    async def webpage(self, html: bytes, *, url: str, max_chars: int) -> WebPage:
        """:func:`extract_webpage` in a child; :class:`ParseError` if it fails, runs out of time or memory."""
        return await self._run(extract_webpage, html, url=url, max_chars=max_chars)

    async def _run(self, function: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        async with self._turn:
            if self._pool is None:
                self._pool = self._new_pool()
            future = self._pool.submit(function, *args, **kwargs)
            try:
                return await asyncio.wait_for(asyncio.wrap_future(future), self._timeout_s)
            except TimeoutError:
                self._stop(wait=False)
                raise ParseError(
                    f"parsing took longer than {self._timeout_s:g} s (OBDAL_PARSE_TIMEOUT_S)"
                ) from None
            except MemoryError:
                raise ParseError("parsing needed more memory than allowed (OBDAL_PARSE_MEMORY_MB)") from None
            except BrokenProcessPool:
                self._stop(wait=False)
                raise ParseError("the parser crashed on this file") from None
            except RecursionError:
                raise ParseError("the file is nested too deeply to parse") from None

    def close(self) -> None:
        """Stop the child processes."""
        self._stop(wait=True)
