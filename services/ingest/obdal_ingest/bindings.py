"""Ingest's side of its contract: one handler per RPC of :class:`~obdal_common.contract.Ingest`.

NATS failing under a handler (KV, Object Store or JetStream unreachable, a restart) is
mapped here, once for every RPC, to 503 ``nats_unavailable``, as the gateway answers its
own NATS failures; the lifecycle below raises nats-py's errors and never maps them itself.
"""

from __future__ import annotations

import nats.errors

from obdal_common.contract import Bindings, Ingest
from obdal_common.errors import DependencyUnavailable
from obdal_common.health import Check, status_handler
from obdal_common.schemas import IngestDeleteApp, IngestDeleted
from obdal_ingest.answers import CuratedAnswerStore
from obdal_ingest.files import FileLifecycle
from obdal_ingest.sources import SourceStore

__all__ = ["ingest_bindings"]


def _nats_unavailable() -> DependencyUnavailable:
    return DependencyUnavailable("the message bus is unavailable, retry shortly", code="nats_unavailable")


def ingest_bindings(
    *,
    files: FileLifecycle,
    answers: CuratedAnswerStore,
    sources: SourceStore,
    checks: dict[str, Check],
) -> Bindings:
    """Every ingest RPC bound to what answers it."""

    async def delete_app(req: IngestDeleteApp) -> IngestDeleted:
        # Sources first: a sync in flight stops at its next page, before the files are swept.
        await sources.delete_app(req.app_id)
        return await files.delete_app(req)

    return (
        Bindings(Ingest, lower_errors={nats.errors.Error: _nats_unavailable})
        .bind(Ingest.status, status_handler("ingest", checks))
        .bind(Ingest.upload, files.upload)
        .bind(Ingest.replace, files.replace)
        .bind(Ingest.get, files.get)
        .bind(Ingest.list, files.list_files)
        .bind(Ingest.outcome, files.outcome)
        .bind(Ingest.delete, files.delete)
        .bind(Ingest.delete_app, delete_app)
        .bind(Ingest.answer_create, answers.create)
        .bind(Ingest.answer_update, answers.update)
        .bind(Ingest.answer_get, answers.get)
        .bind(Ingest.answer_list, answers.list_answers)
        .bind(Ingest.answer_delete, answers.delete)
        .bind(Ingest.source_create, sources.create)
        .bind(Ingest.source_get, sources.get)
        .bind(Ingest.source_list, sources.list_sources)
        .bind(Ingest.source_pages, sources.pages)
        .bind(Ingest.source_sync, sources.request_sync)
        .bind(Ingest.source_delete, sources.delete)
    )
