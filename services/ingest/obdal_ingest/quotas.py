"""How many chunks an app's files may become in any rolling hour (``OBDAL_APP_CHUNKS_PER_HOUR``).

Every chunk costs an embedding (~0.1 s on two cores with the default model, docs/ingestion.md),
so chunks, not files or bytes, are what an app's uploads cost the workers: a 33 KB Word file
made 11,900 of them. The count is kept where the cost is known, in the worker once a file is
parsed: an upload cannot tell how many chunks its bytes will make. A file over the quota ends
``failed`` (``ingest_quota_exceeded``) with the time it would fit, before any chunk of it is
embedded; an app whose hour is used up has its next files refused before they are even parsed.

One KV record per app (``<app_id>.quota.chunks`` in the files bucket: never one of
:meth:`FileStatusStore.list`'s ``<app_id>.*`` keys) holds the chunks charged per minute of the
last hour, at most 60 numbers, written with compare-and-set so every ingest replica shares it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from obdal_common.errors import RateLimited
from obdal_common.schemas import decode, encode

__all__ = ["IngestQuota", "QuotaExceeded"]

_MINUTE_S = 60
_WINDOW_MINUTES = 60


class QuotaExceeded(RateLimited):
    """The app's files became as many chunks in the last hour as it may index."""

    default_code = "ingest_quota_exceeded"


class _Usage(msgspec.Struct, frozen=True, kw_only=True):
    # Chunks charged in each minute (minutes since the epoch) of the last hour.
    minutes: dict[int, int] = {}


def _key(app_id: str) -> str:
    return f"{app_id}.quota.chunks"


class IngestQuota:
    """The chunks each app may index per rolling hour, shared by every ingest replica."""

    def __init__(self, kv: KeyValue, *, per_hour: int) -> None:
        self._kv = kv
        self._per_hour = per_hour

    async def check(self, app_id: str) -> None:
        """:class:`QuotaExceeded` if the app has no chunk left this hour (so nothing is parsed)."""
        now = self._minute()
        usage, _ = await self._read(app_id, now)
        self._refuse_unless_fits(usage, now, chunks=None)

    async def charge(self, app_id: str, chunks: int) -> None:
        """Count ``chunks`` against the app's hour, or :class:`QuotaExceeded` if they do not fit."""
        while True:
            now = self._minute()
            usage, revision = await self._read(app_id, now)
            self._refuse_unless_fits(usage, now, chunks=chunks)
            minutes = dict(usage.minutes)
            minutes[now] = minutes.get(now, 0) + chunks
            value = encode(_Usage(minutes=minutes))
            try:
                if revision is None:
                    await self._kv.create(_key(app_id), value)
                else:
                    await self._kv.update(_key(app_id), value, last=revision)
                return
            except KeyWrongLastSequenceError:
                continue  # another replica charged meanwhile: count again

    def _minute(self) -> int:
        return int(time.time()) // _MINUTE_S

    async def _read(self, app_id: str, now: int) -> tuple[_Usage, int | None]:
        """The app's charges of the last hour and the record's revision (``None``: no record)."""
        try:
            entry = await self._kv.get(_key(app_id))
        except KeyNotFoundError:
            return _Usage(), None
        if not entry.value:  # typed optional by nats-py; written by charge(), it never is empty
            return _Usage(), entry.revision
        usage = decode(entry.value, _Usage)
        recent = {m: n for m, n in usage.minutes.items() if m > now - _WINDOW_MINUTES}
        return _Usage(minutes=recent), entry.revision

    def _refuse_unless_fits(self, usage: _Usage, now: int, *, chunks: int | None) -> None:
        """``chunks`` ``None``: whether any chunk at all is left."""
        used = sum(usage.minutes.values())
        need = 1 if chunks is None else chunks
        if used + need <= self._per_hour:
            return
        limit = f"{self._per_hour:,} chunks per hour allowed for an app (OBDAL_APP_CHUNKS_PER_HOUR)"
        if need > self._per_hour:
            raise QuotaExceeded(f"the file would become {need:,} chunks, more than the {limit}")
        adding = "none are left for this one" if chunks is None else f"this one would add {chunks:,}"
        # The first minute by which enough of the oldest charges have left the rolling hour.
        freed, retry_minute = 0, now
        for minute in sorted(usage.minutes):
            freed += usage.minutes[minute]
            retry_minute = minute + _WINDOW_MINUTES
            if used - freed + need <= self._per_hour:
                break
        retry_at = datetime.fromtimestamp(retry_minute * _MINUTE_S, UTC)
        raise QuotaExceeded(
            f"the app's files became {used:,} chunks in the last hour and {adding}, over the {limit};"
            f" upload it again after {retry_at:%H:%M} UTC"
        )
