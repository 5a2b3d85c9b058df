"""Generations: the task that streams one reply from the provider to everyone watching.

A generation is an asyncio task of its own, not tied to the socket that asked for it: a
closed tab or a dropped connection does not end it. It coalesces tokens into small batches
(at most STREAM_BATCH_INTERVAL_MS apart), publishes each batch with a sequence number,
checkpoints the text so far about once a second, and ends the turn exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction

from billing import catalog, meter
from billing.errors import admin_detail
from llm.base import (
    ChatRequest,
    ErrorKind,
    Queued,
    StreamEnd,
    StreamError,
    StreamStarted,
    TextDelta,
    Usage,
)

from . import frames, hub
from .models import Message
from .rendering import render_markdown
from .services import Turn, reply_checkpoint, reply_finish, reply_heartbeat

log = logging.getLogger(__name__)

_running: dict[int, Generation] = {}


@dataclass
class Generation:
    reply_id: int
    group: str
    request: ChatRequest
    provider: catalog.ProviderSpec
    reservation_id: int | None = None
    input_estimate: int = 0
    task: asyncio.Task[None] | None = None
    stop_requested: bool = False
    seq: int = 0
    parts: list[str] = field(default_factory=list)
    _pending: list[str] = field(default_factory=list)
    _last_flush: float = 0.0
    _flush_timer: asyncio.TimerHandle | None = None
    _deferred: asyncio.Future[None] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    async def run(self) -> None:
        if self.reservation_id is None:
            # Every call to a model goes through the meter: no reservation, no call.
            raise ValueError(f"reply {self.reply_id} has no budget reservation")
        loop = asyncio.get_running_loop()
        interval = settings.STREAM_BATCH_INTERVAL_MS / 1000
        checkpoint_every = settings.STREAM_CHECKPOINT_INTERVAL_MS / 1000
        last_checkpoint = loop.time()
        usage = Usage()
        deltas = 0
        end: StreamEnd | None = None
        error: StreamError | None = None
        request_id = ""
        cancelled_by_shutdown = False
        accepted = False  # whether the upstream took the request (and may bill for it)
        started_at = loop.time()
        first_token_at: float | None = None
        stream = catalog.client(self.provider).stream(self.request)
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            async for event in stream:
                if isinstance(event, TextDelta):
                    deltas += 1
                    if first_token_at is None:
                        first_token_at = loop.time()
                    self.parts.append(event.text)
                    self._pending.append(event.text)
                    now = loop.time()
                    if now - self._last_flush >= interval:
                        await self.flush()
                    elif self._flush_timer is None:
                        delay = self._last_flush + interval - now
                        self._flush_timer = loop.call_later(delay, self._deferred_flush)
                    if now - last_checkpoint >= checkpoint_every:
                        last_checkpoint = now
                        await database_sync_to_async(reply_checkpoint)(
                            reply_id=self.reply_id, content=self.text
                        )
                elif isinstance(event, Usage):
                    usage = Usage(
                        input_tokens=event.input_tokens or usage.input_tokens,
                        output_tokens=event.output_tokens or usage.output_tokens,
                    )
                elif isinstance(event, Queued):
                    await hub.publish(
                        self.group, frames.reply_status(self.reply_id, queued=event.position)
                    )
                elif isinstance(event, StreamStarted):
                    accepted = True
                    request_id = event.request_id
                    if not self.parts:
                        await hub.publish(self.group, frames.reply_status(self.reply_id))
                elif isinstance(event, StreamEnd):
                    end = event
                elif isinstance(event, StreamError):
                    error = event
        except asyncio.CancelledError:
            # Stop, or the server shutting down: either way the turn still ends here.
            cancelled_by_shutdown = not self.stop_requested
        finally:
            heartbeat.cancel()
            # Closing the stream closes the HTTP response: the upstream stops generating.
            await stream.aclose()
        await self.flush()
        finished_at = loop.time()

        if self.stop_requested:
            status = Message.Status.STOPPED
        elif cancelled_by_shutdown:
            status = Message.Status.INTERRUPTED
        elif error is not None:
            status = Message.Status.FAILED
        elif end is not None:
            status = (
                Message.Status.CUT_OFF
                if end.stop_reason == "max_tokens"
                else Message.Status.COMPLETE
            )
        else:
            status = Message.Status.FAILED
            error = StreamError(kind=ErrorKind.CONNECTION, message="The stream ended early.")
        if error is not None:
            log.warning("reply %s failed: %s", self.reply_id, admin_detail(error))
        text = self.text
        html = await sync_to_async(render_markdown, thread_sensitive=False)(text) if text else ""
        # What to bill: the upstream's count when it gave one; for a stream cut short,
        # the input plus what was received, a token per text delta (each carries at least
        # one, so this never bills more than was sent); nothing if never accepted.
        input_tokens = usage.input_tokens or (self.input_estimate if accepted else 0)
        if end is not None and usage.output_tokens is not None:
            output_tokens = usage.output_tokens
        else:
            output_tokens = deltas
        error_kind = (
            error.kind.value
            if error
            else ("interrupted" if status == Message.Status.INTERRUPTED else "")
        )
        attempt = meter.Attempt(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            outcome=status,
            error_kind=error_kind,
            upstream_request_id=request_id or (error.request_id if error else ""),
            ttft_ms=round((first_token_at - started_at) * 1000) if first_token_at else None,
            duration_ms=round((finished_at - started_at) * 1000),
        )
        message, spend = await database_sync_to_async(_finish)(
            reply_id=self.reply_id,
            reservation_id=self.reservation_id,
            attempt=attempt,
            content=text,
            content_html=html,
            stop_reason=end.stop_reason if end else "",
            error_detail=admin_detail(error) if error else "",
        )
        await hub.publish(self.group, frames.message_replaced(message) + frames.spend(spend))
        if cancelled_by_shutdown:
            raise asyncio.CancelledError

    async def _heartbeat(self) -> None:
        """Show recovery this turn is alive, even while no token arrives."""
        interval = max(1.0, settings.RECOVERY_STALE_SECONDS / 4)
        while True:
            await asyncio.sleep(interval)
            await database_sync_to_async(reply_heartbeat)(reply_id=self.reply_id)

    def _deferred_flush(self) -> None:
        self._flush_timer = None
        if self._pending:
            self._deferred = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        async with self._lock:
            if self._flush_timer is not None:
                self._flush_timer.cancel()
                self._flush_timer = None
            if not self._pending:
                return
            text = "".join(self._pending)
            self._pending.clear()
            self.seq += 1
            self._last_flush = asyncio.get_running_loop().time()
            await hub.publish(self.group, frames.batch(self.reply_id, self.seq, text))

    def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.stop_requested = True
            self.task.cancel()


async def launch(turn: Turn) -> Generation | None:
    """Announce a new turn to everyone watching and start its generation."""
    if not turn.created:
        return _running.get(turn.reply.pk)
    group = hub.group_name(turn.conversation.pk)
    await hub.publish(group, frames.turn_started(turn.user_message, turn.reply))
    if turn.request is None:  # refused before any call (no budget): nothing to generate
        return None
    if turn.provider is None:
        raise ValueError("A new turn needs a provider")
    generation = Generation(
        reply_id=turn.reply.pk,
        group=group,
        request=turn.request,
        provider=turn.provider,
        reservation_id=turn.reply.reservation_id,
        input_estimate=turn.input_estimate,
    )
    generation.task = asyncio.create_task(generation.run(), name=f"reply-{turn.reply.pk}")
    _running[turn.reply.pk] = generation
    generation.task.add_done_callback(lambda _task: _running.pop(turn.reply.pk, None))
    return generation


def stop(reply_id: int) -> bool:
    """Stop a generation running in this process. The caller has checked ownership."""
    generation = _running.get(reply_id)
    if generation is None:
        return False
    generation.stop()
    return True


def running(reply_id: int) -> Generation | None:
    return _running.get(reply_id)


def _finish(
    *,
    reply_id: int,
    reservation_id: int | None,
    attempt: meter.Attempt,
    content: str,
    content_html: str,
    stop_reason: str,
    error_detail: str,
) -> tuple[Message, meter.Spend]:
    """End the turn: settle its reservation (exactly once) and record the reply, together."""
    with transaction.atomic():
        charged = None
        if reservation_id is not None:
            charged = meter.settle(reservation_id=reservation_id, attempts=[attempt])
        message = reply_finish(
            reply_id=reply_id,
            content=content,
            content_html=content_html,
            status=attempt.outcome,
            input_tokens=attempt.input_tokens,
            output_tokens=attempt.output_tokens,
            stop_reason=stop_reason,
            error_kind=attempt.error_kind,
            error_detail=error_detail,
            upstream_request_id=attempt.upstream_request_id,
            cost_micros=charged,
        )
    return message, meter.spend_today(message.conversation.owner)
