"""Apps (tenants) in NATS KV."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from obdal_common.errors import Conflict, NotFound
from obdal_common.ids import new_id
from obdal_common.messaging import keys_matching, read_record
from obdal_common.schemas import AppRecord, ChatConfig, HandoffConfig, IdentitySecret, WidgetConfig, encode

__all__ = ["AppRegistry"]


class AppRegistry:
    """The apps in the KV bucket ``bucket`` (``kv`` is its handle; ``js`` lists its keys)."""

    def __init__(self, kv: KeyValue, *, js: JetStreamContext, bucket: str) -> None:
        self._kv, self._js, self._bucket = kv, js, bucket

    async def create(self, name: str) -> AppRecord:
        app = AppRecord(app_id=new_id("app"), name=name, created_at=datetime.now(UTC))
        await self._kv.create(app.app_id, encode(app))
        return app

    async def get(self, app_id: str) -> AppRecord:
        return (await self._entry(app_id))[0]

    async def _entry(self, app_id: str) -> tuple[AppRecord, int]:
        found = await read_record(self._kv, app_id, AppRecord)
        if found is None:
            raise NotFound(f"no app {app_id}", code="app_not_found")
        return found

    async def set_chat(self, app_id: str, config: ChatConfig) -> AppRecord:
        """Replace an app's generation settings. Chat workers see the change through their watch."""
        return await self._replace(app_id, chat=config)

    async def set_widget(self, app_id: str, config: WidgetConfig) -> AppRecord:
        """Replace how the app's chat widget looks (``GET /v1/widget/config`` serves it)."""
        return await self._replace(app_id, widget=config)

    async def set_handoff(self, app_id: str, config: HandoffConfig) -> AppRecord:
        """Replace whether and how the app's customers may ask for a person (docs/handoff.md)."""
        return await self._replace(app_id, handoff=config)

    async def set_identity(self, app_id: str, identity: IdentitySecret | None) -> AppRecord:
        """Set (or, with ``None``, remove) the secret end users' ids are verified with."""
        return await self._replace(app_id, identity=identity)

    async def rename(self, app_id: str, name: str) -> AppRecord:
        return await self._replace(app_id, name=name)

    async def delete(self, app_id: str) -> None:
        """Remove the app's record, every revision of it (``DELETE /v1/admin/apps/{id}`` erases
        its content first). Watching chat workers see it go."""
        await self._kv.purge(app_id)

    async def _replace(self, app_id: str, **changes: Any) -> AppRecord:
        app, revision = await self._entry(app_id)
        app = msgspec.structs.replace(app, **changes)
        try:
            # Compare-and-set: a concurrent change of the same app is refused, never lost.
            await self._kv.update(app_id, encode(app), last=revision)
        except KeyWrongLastSequenceError:
            raise Conflict("the app changed meanwhile; retry", code="app_changed") from None
        return app

    async def list(self) -> list[AppRecord]:
        # Not KeyValue.keys(): while other clients write to the bucket it returned a partial or
        # empty list (an operator's console page lost its app: a 404 in CI).
        keys = await keys_matching(self._js, self._bucket, "*")
        found: list[AppRecord] = []
        for app_id in keys:
            try:
                found.append(await self.get(app_id))
            except NotFound:
                continue  # deleted between the listing and the read: gone, not an error
        return sorted(found, key=lambda a: a.created_at)
