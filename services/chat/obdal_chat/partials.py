"""Metering of answers whose worker died mid-stream.

The gateway publishes what it relayed of such an answer (a :class:`PartialAnswer`)
to a work-queue stream; whichever chat worker is alive counts its tokens with the
model's tokenizer and records it like any answer, under the dead worker's event
ids, so an answer is metered once even if its worker was only slow.

A partial holds the question and what was relayed of the answer: once recorded, it is erased
from the stream (its bytes overwritten) before the ack, since a work queue's ack only drops it
from the index and leaves the bytes in the block file (:mod:`obdal_common.messaging`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from obdal_chat.app_settings import AppSettings
from obdal_chat.generation import Completion, Generator
from obdal_chat.pipeline import AnswerPipeline
from obdal_common import subjects
from obdal_common.messaging import decode_or_term, erase_msg, pull_each
from obdal_common.schemas import ChatRequest, PartialAnswer, Usage

__all__ = ["PartialAnswers"]

log = logging.getLogger(__name__)

_BATCH = 16
_RETRY_S = 1.0


class PartialAnswers:
    """The durable consumer of partial answers, shared by every chat worker."""

    def __init__(
        self,
        js: JetStreamContext,
        pipeline: AnswerPipeline,
        generator: Generator,
        apps: AppSettings,
        *,
        max_deliver: int,
        ack_wait_s: float,
    ) -> None:
        self._js = js
        self._max_deliver = max_deliver
        self._ack_wait_s = ack_wait_s
        self._pipeline = pipeline
        self._generator = generator
        self._apps = apps

    async def consume(self, stop: asyncio.Event) -> None:
        """Meter partial answers until ``stop``; each is acked once its events are published."""
        sub = await self._js.pull_subscribe(
            subjects.CHAT_PARTIAL,
            durable=subjects.CHAT_PARTIAL_CONSUMER,
            stream=subjects.CHAT_PARTIAL_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT, max_deliver=self._max_deliver, ack_wait=self._ack_wait_s
            ),
        )
        await pull_each(sub, self._meter, stop=stop, batch=_BATCH, what="partial answer")

    async def _meter(self, msg: Msg) -> None:
        partial = await decode_or_term(msg, PartialAnswer, what="partial answer")
        if partial is None:
            return
        options = await self._apps.for_app(partial.app_id)
        if options.model != partial.model:  # the app changed model since: the app's price was for another
            options = dataclasses.replace(
                options, model=partial.model, input_cost_per_token=None, output_cost_per_token=None
            )
        completion = Completion(
            text=partial.answer,
            prompt_tokens=partial.prompt_tokens,
            completion_tokens=self._generator.count_tokens(partial.model, text=partial.answer),
        )
        usage = Usage(
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            total_tokens=completion.prompt_tokens + completion.completion_tokens,
            cost=self._generator.cost(completion, options=options),
        )
        request = ChatRequest(
            request_id=partial.event_id,
            app_id=partial.app_id,
            key_id=partial.key_id,
            session_id=partial.session_id,
            message=partial.user_message,
            user=partial.user,
        )
        if await self._pipeline.record(
            request, partial.message_id, options, partial.answer, [], usage, finished=False
        ):
            log.info(
                "metered the partial answer %s of a dead worker (%d tokens)",
                partial.message_id,
                usage.total_tokens,
            )
            await erase_msg(self._js, msg)
            await msg.ack_sync()
        else:
            await msg.nak(delay=_RETRY_S)
