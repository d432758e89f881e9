"""Apps (tenants) in NATS KV."""

from __future__ import annotations

from datetime import UTC, datetime

from nats.js.errors import KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from obdal_common.errors import NotFound
from obdal_common.ids import new_id
from obdal_common.schemas import AppRecord, decode, encode

__all__ = ["AppRegistry"]


class AppRegistry:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def create(self, name: str) -> AppRecord:
        app = AppRecord(app_id=new_id("app"), name=name, created_at=datetime.now(UTC))
        await self._kv.create(app.app_id, encode(app))
        return app

    async def get(self, app_id: str) -> AppRecord:
        try:
            entry = await self._kv.get(app_id)
        except KeyNotFoundError:
            entry = None
        if entry is None or not entry.value:
            raise NotFound(f"no app {app_id}", code="app_not_found")
        return decode(entry.value, AppRecord)

    async def list(self) -> list[AppRecord]:
        try:
            keys = await self._kv.keys()
        except NoKeysError:
            return []
        return sorted([await self.get(k) for k in keys], key=lambda a: a.created_at)
