"""The gateway's app registry against a real NATS KV bucket (in a module of its own: the console
tests' Playwright keeps an event loop running in their thread)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from obdal_common.messaging import close, connect
from obdal_gateway.apps import AppRegistry
from tests.conftest import Servers


class _DeletedMeanwhile:
    """A real KV bucket where an app is deleted (as another operator's ``DELETE
    /v1/admin/apps/{id}`` does) after its key was listed and before it is read."""

    def __init__(self, kv: KeyValue, doomed: str) -> None:
        self._kv, self._doomed = kv, doomed

    async def get(self, key: str) -> Any:
        if key == self._doomed:
            await self._kv.purge(key)
        return await self._kv.get(key)


Bucket = tuple[JetStreamContext, KeyValue, str]


@pytest.fixture
async def bucket(servers: Servers) -> AsyncIterator[Bucket]:
    nc = await connect(servers.nats.url, name="apps-list-test")
    js = nc.jetstream()
    name = f"apps_list_{uuid.uuid4().hex[:8]}"
    try:
        yield js, await js.create_key_value(bucket=name), name
    finally:
        await js.delete_key_value(name)
        await close(nc)


async def test_listing_apps_skips_one_deleted_meanwhile(bucket: Bucket) -> None:
    js, kv, name = bucket
    registry = AppRegistry(kv, js=js, bucket=name)
    kept, doomed = await registry.create("kept"), await registry.create("doomed")
    stale = AppRegistry(_DeletedMeanwhile(kv, doomed.app_id), js=js, bucket=name)  # type: ignore[arg-type]
    assert [a.app_id for a in await stale.list()] == [kept.app_id]


async def test_listing_apps_while_others_write_misses_none(bucket: Bucket) -> None:
    """Other operators create and rename apps all the time; each listing still has every app that
    existed before it (nats-py's ``KeyValue.keys()`` returned partial and empty lists here)."""
    js, kv, name = bucket
    registry = AppRegistry(kv, js=js, bucket=name)
    existing = {(await registry.create(f"app {i}")).app_id for i in range(100)}
    busy = await registry.create("busy")
    writing = True

    async def others() -> None:
        turn = 0
        while writing:
            await registry.rename(busy.app_id, f"busy {turn}")
            turn += 1

    writer = asyncio.create_task(others())
    try:
        for _ in range(30):
            listed = {a.app_id for a in await registry.list()}
            assert existing <= listed, f"{len(existing - listed)} of {len(existing)} apps missing"
    finally:
        writing = False
        await writer
