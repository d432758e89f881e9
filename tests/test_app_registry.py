"""The gateway's app registry against a real NATS KV bucket (in a module of its own: the console
tests' Playwright keeps an event loop running in their thread)."""

from __future__ import annotations

import uuid
from typing import Any

from nats.js.kv import KeyValue

from obdal_common.messaging import close, connect
from obdal_gateway.apps import AppRegistry
from tests.conftest import Servers


class _DeletedMeanwhile:
    """A real KV bucket whose listing goes stale: an app is deleted (as another operator's
    ``DELETE /v1/admin/apps/{id}`` does) after its key was listed and before it is read."""

    def __init__(self, kv: KeyValue, doomed: str) -> None:
        self._kv, self._doomed = kv, doomed

    async def keys(self) -> list[str]:
        listed = await self._kv.keys()
        await self._kv.purge(self._doomed)
        return listed

    async def get(self, key: str) -> Any:
        return await self._kv.get(key)


async def test_listing_apps_skips_one_deleted_meanwhile(servers: Servers) -> None:
    nc = await connect(servers.nats.url, name="apps-list-test")
    js = nc.jetstream()
    bucket = f"apps_list_{uuid.uuid4().hex[:8]}"
    try:
        kv = await js.create_key_value(bucket=bucket)
        registry = AppRegistry(kv)
        kept, doomed = await registry.create("kept"), await registry.create("doomed")
        stale = AppRegistry(_DeletedMeanwhile(kv, doomed.app_id))  # type: ignore[arg-type]
        assert [a.app_id for a in await stale.list()] == [kept.app_id]
    finally:
        await js.delete_key_value(bucket)
        await close(nc)
