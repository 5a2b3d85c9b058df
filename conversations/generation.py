"""Generations: the task that streams one reply from the provider to everyone watching.

A generation is an asyncio task of its own, not tied to the socket that asked for it: a
closed tab or a dropped connection does not end it. It coalesces tokens into small batches
(at most STREAM_BATCH_INTERVAL_MS apart), publishes each batch with a sequence number,
checkpoints the text so far about once a second, and ends the turn exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connections, transaction
from django.utils.translation import gettext as _
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from billing import catalog, meter
from billing.errors import admin_detail
from billing.scheduler import Priority, scheduler
from llm.base import (
    ChatRequest,
    ErrorKind,
    Event,
    Queued,
    StreamEnd,
    StreamError,
    StreamStarted,
    TextDelta,
    Usage,
)
from ops import metrics

from . import figures, frames, hub, redis_pipe
from .models import Message
from .rendering import render_markdown
from .replay import RedisLog, replay_log
from .services import CONTINUE, NEW, Turn, replies_checkpoint, reply_finish
from .streaming_render import StreamRenderer

log = logging.getLogger(__name__)
_T = TypeVar("_T")
STOP_REASON_CHARS = Message._meta.get_field("stop_reason").max_length

_running: dict[int, Generation] = {}


class _Retryable(Exception):
    def __init__(self, error: StreamError):
        super().__init__(error.message)
        self.error = error


def _retry_wait(state: RetryCallState) -> float:
    """Honour the upstream's retry-after; otherwise exponential backoff with jitter."""
    failure = state.outcome.exception() if state.outcome else None
    if isinstance(failure, _Retryable) and failure.error.retry_after:
        return min(failure.error.retry_after, settings.UPSTREAM_RETRY_WINDOW_SECONDS)
    return _backoff(state)


_backoff = wait_random_exponential(multiplier=0.5, max=8)


@dataclass
class _Try:
    """One upstream request of a turn, as it goes."""

    started_at: float
    finished_at: float = 0.0
    first_token_at: float | None = None
    accepted: bool = False  # the upstream took the request (and may bill for it)
    request_id: str = ""
    usage: Usage = field(default_factory=Usage)
    deltas: int = 0
    end: StreamEnd | None = None
    error: StreamError | None = None

    def bill(self, input_estimate: int, *, outcome: str, retries: int) -> meter.Attempt:
        """What to bill: the upstream's count when it gave one; for a stream cut short,
        the input plus what was received, a token per text delta (each carries at least
        one, so this never bills more than was sent); nothing if never accepted."""
        input_tokens = self.usage.input_tokens or (input_estimate if self.accepted else 0)
        if self.end is not None and self.usage.output_tokens is not None:
            output_tokens = self.usage.output_tokens
        else:
            output_tokens = self.deltas
        error = self.error
        return meter.Attempt(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            outcome=outcome,
            error_kind=error.kind.value if error else "",
            error_detail=admin_detail(error) if error else "",
            upstream_request_id=self.request_id or (error.request_id if error else ""),
            ttft_ms=(
                round((self.first_token_at - self.started_at) * 1000)
                if self.first_token_at
                else None
            ),
            duration_ms=round(((self.finished_at or self.started_at) - self.started_at) * 1000),
            retries=retries,
        )


@dataclass
class Generation:
    reply_id: int
    group: str
    request: ChatRequest
    provider: catalog.ProviderSpec
    reservation_id: int | None = None
    payer: str = ""  # who pays: the scheduler serves people in turn
    input_estimate: int = 0
    prefix: str = ""  # a continued reply's text before this generation
    task: asyncio.Task[None] | None = None
    stop_requested: bool = False
    seq: int = 0
    parts: list[str] = field(default_factory=list)
    tries: list[_Try] = field(default_factory=list)
    _pending: list[str] = field(default_factory=list)
    _last_flush: float = 0.0
    _flush_timer: asyncio.TimerHandle | None = None
    _deferred: asyncio.Future[None] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _deadline: float = 0.0
    _cue: asyncio.TimerHandle | None = None
    _saving: asyncio.Future[None] | None = None
    _background: set[asyncio.Future[None]] = field(default_factory=set)
    _reset: asyncio.Future[list[object]] | None = None
    _relaying: asyncio.Future[None] | None = None  # the last batch's logging and relay
    # The page's copy of the reply, formatted as it streams; made in run() (a Continue's
    # is the text so far: a reply's worth of rendering, done off the event loop).
    renderer: StreamRenderer = field(default_factory=StreamRenderer)

    @property
    def text(self) -> str:
        return self.prefix + "".join(self.parts)

    async def run(self) -> None:
        if self.reservation_id is None:
            # Every call to a model goes through the meter: no reservation, no call.
            raise ValueError(f"reply {self.reply_id} has no budget reservation")
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + settings.LLM_TOTAL_TIMEOUT
        if self.prefix:
            self.renderer = await sync_to_async(StreamRenderer, thread_sensitive=False)(self.prefix)
        replay = replay_log()
        if isinstance(replay, RedisLog):
            # Queued ahead of every batch's logging, not waited for: the request leaves now.
            self._reset = redis_pipe.pipeliner(replay.url).submit(
                *replay.reset_commands(self.reply_id)
            )
            self._reset.add_done_callback(self._reset_failed)
        else:
            await replay.reset(self.reply_id)
        cancelled_by_shutdown = False
        heartbeat = asyncio.create_task(self._heartbeat())
        metrics.ACTIVE_STREAMS.inc()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(settings.UPSTREAM_MAX_ATTEMPTS)
            | stop_after_delay(settings.UPSTREAM_RETRY_WINDOW_SECONDS),
            wait=_retry_wait,
            retry=retry_if_exception_type(_Retryable),
            before_sleep=self._announce_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    current = await self._attempt(loop)
                    error = current.error
                    # Retry only what may work next time, and only before any text was
                    # shown: after that, the partial reply stands and Retry is offered.
                    if error is not None and error.retryable and not self.parts:
                        if error.kind is ErrorKind.RATE_LIMIT and error.retry_after:
                            await scheduler().pause(self._upstream_key, error.retry_after)
                        raise _Retryable(error)
        except _Retryable:
            pass  # Out of attempts or time: the last error stands.
        except Exception as exc:  # A bug must still end the turn, not leave it spinning.
            log.exception("reply %s: generation failed", self.reply_id)
            if self.tries:
                self.tries[-1].error = StreamError(kind=ErrorKind.UNKNOWN, message=repr(exc))
        except asyncio.CancelledError:
            # Stop, or the server shutting down: either way the turn still ends here.
            cancelled_by_shutdown = not self.stop_requested
        finally:
            heartbeat.cancel()
            metrics.ACTIVE_STREAMS.dec()
        await self.flush()
        if self._relaying is not None:  # every batch logged and relayed before the end
            await asyncio.gather(self._relaying, return_exceptions=True)
        if self._saving is not None:
            await asyncio.gather(self._saving, return_exceptions=True)
        await self._end(loop, cancelled_by_shutdown)
        if cancelled_by_shutdown:
            raise asyncio.CancelledError

    @property
    def _upstream_key(self) -> str:
        return f"{self.provider.name}:{self.request.model}"

    async def _attempt(self, loop: asyncio.AbstractEventLoop) -> _Try:
        """One upstream request, streamed to everyone watching."""
        current = _Try(started_at=loop.time())
        self.tries.append(current)
        # Made before the slot is taken, so the request leaves as soon as its slot comes
        # (the first client of a process takes a while to make).
        client = catalog.client(self.provider)
        if self.provider.name != "local":  # the local model queues by itself
            metrics.QUEUED.inc()
            try:
                # No longer than the turn may take: a request the queue lost for good ends
                # as a timeout, and is settled, instead of waiting for ever.
                async with asyncio.timeout_at(self._deadline):
                    await scheduler().acquire(
                        self._upstream_key,
                        who=self.payer,
                        priority=Priority.INTERACTIVE,
                        on_queued=self._announce_queue,
                    )
            except TimeoutError:
                current.error = StreamError(
                    kind=ErrorKind.TIMEOUT, message="No upstream slot within the turn's time."
                )
                current.finished_at = loop.time()
                return current
            finally:
                metrics.QUEUED.dec()
            current.started_at = loop.time()
        stream = client.stream(self.request)
        self._arm_cue(loop)
        try:
            async with asyncio.timeout(None) as limit:
                self._arm(limit, loop, settings.LLM_FIRST_TOKEN_TIMEOUT)
                await self._consume(stream, current, loop, limit)
            if current.end is None and current.error is None:
                current.error = StreamError(
                    kind=ErrorKind.CONNECTION, message="The stream ended early."
                )
        except TimeoutError:
            current.error = self._timeout(current, loop)
        finally:
            current.finished_at = loop.time()
            self._disarm_cue()
            # Closing the stream closes the HTTP response: the upstream stops generating.
            await stream.aclose()
        if current.error is not None:
            log.warning("reply %s: %s", self.reply_id, admin_detail(current.error))
        return current

    async def _consume(
        self,
        stream: AsyncIterator[Event],
        current: _Try,
        loop: asyncio.AbstractEventLoop,
        limit: asyncio.Timeout,
    ) -> None:
        """Stream one upstream request's events to everyone watching."""
        interval = settings.STREAM_BATCH_INTERVAL_MS / 1000
        checkpoint_every = settings.STREAM_CHECKPOINT_INTERVAL_MS / 1000
        last_checkpoint = loop.time()
        async for event in stream:
            if isinstance(event, TextDelta):
                current.deltas += 1
                if current.first_token_at is None:
                    current.first_token_at = loop.time()
                    self._disarm_cue()
                self._arm(limit, loop, settings.LLM_TOKEN_TIMEOUT)
                self.parts.append(event.text)
                self._pending.append(event.text)
                now = loop.time()
                if now - self._last_flush >= interval:
                    await self.flush()
                elif self._flush_timer is None:
                    delay = self._last_flush + interval - now
                    self._flush_timer = loop.call_later(delay, self._deferred_flush)
                if now - last_checkpoint >= checkpoint_every and self._saved():
                    last_checkpoint = now
                    await self.checkpoint(wait=False)
            elif isinstance(event, Usage):
                current.usage = Usage(
                    input_tokens=event.input_tokens or current.usage.input_tokens,
                    output_tokens=event.output_tokens or current.usage.output_tokens,
                )
            elif isinstance(event, Queued):
                # Waiting in the local model's queue is not the model being slow.
                self._arm(limit, loop, settings.LLM_FIRST_TOKEN_TIMEOUT)
                self._arm_cue(loop)
                await hub.publish(
                    self.group, frames.reply_status(self.reply_id, queued=event.position)
                )
            elif isinstance(event, StreamStarted):
                current.accepted = True
                current.request_id = event.request_id
                if not self.parts:
                    await hub.publish(self.group, frames.reply_status(self.reply_id))
            elif isinstance(event, StreamEnd):
                current.end = event
            elif isinstance(event, StreamError):
                current.error = event

    def _arm(self, limit: asyncio.Timeout, loop: asyncio.AbstractEventLoop, wait: float) -> None:
        """The stream must show progress within `wait` seconds, and end by the deadline."""
        limit.reschedule(min(loop.time() + wait, self._deadline))

    def _timeout(self, current: _Try, loop: asyncio.AbstractEventLoop) -> StreamError:
        if loop.time() >= self._deadline:
            what = f"The reply took longer than {settings.LLM_TOTAL_TIMEOUT:g} s in all."
        elif current.first_token_at is None:
            what = f"No first token within {settings.LLM_FIRST_TOKEN_TIMEOUT:g} s."
        else:
            what = f"No token for {settings.LLM_TOKEN_TIMEOUT:g} s."
        return StreamError(kind=ErrorKind.TIMEOUT, message=what)

    def _arm_cue(self, loop: asyncio.AbstractEventLoop) -> None:
        """Say "still thinking" if the first token is slow to come."""
        self._disarm_cue()
        if not self.parts:
            self._cue = loop.call_later(settings.THINKING_CUE_SECONDS, self._still_thinking)

    def _disarm_cue(self) -> None:
        if self._cue is not None:
            self._cue.cancel()
            self._cue = None

    def _still_thinking(self) -> None:
        self._cue = None
        frame = frames.reply_status(
            self.reply_id, text=_("Still thinking… the model is taking longer than usual.")
        )
        task = asyncio.ensure_future(hub.publish(self.group, frame))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _announce_queue(self, ahead: int, seconds: float) -> None:
        if not self.parts:
            wait = max(1, round(seconds))
            text = (
                _("Queued: %(ahead)s ahead of yours, starting in about %(wait)s s…")
                % {"ahead": ahead, "wait": wait}
                if ahead > 0
                else _("Waiting for the model… starting in about %(wait)s s.") % {"wait": wait}
            )
            await hub.publish(self.group, frames.reply_status(self.reply_id, text=text))

    async def _announce_retry(self, state: RetryCallState) -> None:
        wait = state.next_action.sleep if state.next_action else 0
        text = _("The model service is busy. Retrying in %(wait)s s…") % {
            "wait": max(1, round(wait))
        }
        await hub.publish(self.group, frames.reply_status(self.reply_id, text=text))

    async def _end(self, loop: asyncio.AbstractEventLoop, cancelled_by_shutdown: bool) -> None:
        """End the turn once: its status, its text, its bill."""
        last = self.tries[-1] if self.tries else _Try(started_at=loop.time())
        last.finished_at = last.finished_at or loop.time()
        error, end = last.error, last.end
        if self.stop_requested:
            status, error = Message.Status.STOPPED, None
        elif cancelled_by_shutdown:
            status, error = Message.Status.INTERRUPTED, None
        elif error is not None:
            status = Message.Status.FAILED
        elif end is not None and end.stop_reason == "max_tokens":
            status = Message.Status.CUT_OFF
        else:
            status = Message.Status.COMPLETE
        text = self.text
        # The one-shot render of the reply's own text, which the page's copy already shows
        # (streaming_render.py). Not the renderer's: a batch whose render Stop cut short is
        # in the text and must be in what is stored.
        html = await sync_to_async(render_markdown, thread_sensitive=False)(text) if text else ""
        attempts = [
            try_.bill(
                self.input_estimate,
                outcome=Message.Status.FAILED if try_ is not last else status,
                retries=len(self.tries) - 1 if try_ is last else 0,
            )
            for try_ in self.tries
        ]
        if status == Message.Status.INTERRUPTED and attempts:
            attempts[-1] = replace(attempts[-1], error_kind="interrupted")
        # The upstream's word, kept within the column (an unknown, long reason is cut).
        stop_reason = (end.stop_reason if end else "")[:STOP_REASON_CHARS]
        if self.prefix and not self.parts and status != Message.Status.COMPLETE:
            # A Continue that added nothing (stopped, or failed before any new text): the
            # reply stays as it was, cut off, and can still go on.
            status, stop_reason = Message.Status.CUT_OFF, "max_tokens"
        final, charged, owner_id = await _off_the_shared_thread(_finish)(
            reply_id=self.reply_id,
            reservation_id=self.reservation_id,
            attempts=attempts,
            status=status,
            content=text,
            content_html=html,
            stop_reason=stop_reason,
            error_detail=admin_detail(error) if error else "",
        )
        _count(status, attempts, self.tries, charged)
        await hub.publish(self.group, final)
        # The person's other pages (other tabs, other conversations) show the new spend too.
        await hub.spend_changed(owner_id, shown_in=self.group)
        if self._reset is not None:
            await asyncio.gather(self._reset, return_exceptions=True)
        await replay_log().discard(self.reply_id)

    async def _heartbeat(self) -> None:
        """Show recovery this turn is alive, even while no token arrives."""
        interval = max(1.0, settings.RECOVERY_STALE_SECONDS / 4)
        while True:
            await asyncio.sleep(interval)
            await _writer().heartbeat(self.reply_id)

    def _deferred_flush(self) -> None:
        self._flush_timer = None
        if self._pending:
            self._deferred = asyncio.ensure_future(self.flush())

    async def checkpoint(self, *, wait: bool = True) -> None:
        """Save the text so far with the sequence number of its last batch, so a page
        loaded from it continues from the batch after. Without `wait`, the save goes on
        beside the stream: tokens keep flowing while the database writes."""
        await self.flush()  # the saved text and the batches sent agree
        save = _writer().checkpoint(self.reply_id, self.text, self.seq)
        if wait:
            await save
        else:
            self._saving = save

    def _saved(self) -> bool:
        """No checkpoint is being written (one at a time per reply)."""
        return self._saving is None or self._saving.done()

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
            now = asyncio.get_running_loop().time()
            if self._last_flush:
                metrics.BATCH_GAP.observe(now - self._last_flush)
            self._last_flush = now
            # Most batches cost the batch: their text appended, or a small open block
            # rendered again. A batch that may cost more (it closes a code block, rendered
            # whole and highlighted; it completes a line of a large open block, parsed
            # whole and at times rendered; it may highlight code again) is fed in a
            # thread, off the event loop, so the other streams do not wait for it.
            if self.renderer.heavy(text):
                ops = await sync_to_async(self.renderer.feed, thread_sensitive=False)(text)
            else:
                ops = self.renderer.feed(text)
            replay, frame = replay_log(), frames.batch(self.reply_id, self.seq, ops)
            if isinstance(replay, RedisLog) and replay.url == settings.REDIS_URL:
                # Logged before it is sent, in order: the log's commands are queued first
                # (a read of the log in this process comes after them), then this process's
                # sockets get the batch at once, then, once the log has it, other processes
                # watching (the look-up goes in the same round trip). The stream does not
                # wait for Redis: at hundreds of streams a round trip can take longer than
                # a token, and the tokens would fall behind it.
                logged = hub.submit_with_watchers(
                    self.group, replay.append_commands(self.reply_id, self.seq, frame)
                )
                await hub.deliver(self.group, frame)
                self._relaying = asyncio.ensure_future(self._relay(self._relaying, logged, frame))
            else:
                # Logged before it is sent: whoever sees batch N can find batch N-1.
                await replay.append(self.reply_id, self.seq, frame)
                await hub.publish(self.group, frame)

    def _reset_failed(self, reset: asyncio.Future[list[object]]) -> None:
        error = None if reset.cancelled() else reset.exception()
        if error is None and not reset.cancelled():
            error = next((r for r in reset.result() if isinstance(r, Exception)), None)
        if error is not None:
            log.warning("reply %s: the replay log was not emptied: %s", self.reply_id, error)

    async def _relay(
        self,
        previous: asyncio.Future[None] | None,
        logged: asyncio.Future[list[object]],
        frame: str,
    ) -> None:
        """After the batch before (so they arrive in order): once the batch is logged, send
        it to other processes' sockets watching, if there are any."""
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        try:
            results = await logged
            for result in results:
                if isinstance(result, Exception):
                    raise result
            watchers = results[-1] if settings.CHANNEL_LAYER_SHARED else None
            await hub.relay(self.group, frame, watchers)  # type: ignore[arg-type]
        except Exception:
            log.warning("reply %s: a batch was not logged or relayed", self.reply_id, exc_info=True)

    def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.stop_requested = True
            self.task.cancel()


class _Writer:
    """The checkpoints and heartbeats of every reply being written in this process, saved
    together: each database call goes through one thread (and, with health checks, costs a
    query of its own before the first), so at hundreds of streams one call a second per
    reply keeps that thread busy and the event loop waiting on the GIL. Whatever comes in
    while a save is running goes in the next one, in one transaction."""

    def __init__(self) -> None:
        self._checkpoints: dict[int, tuple[str, int]] = {}
        self._heartbeats: set[int] = set()
        self._waiting: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None

    def checkpoint(self, reply_id: int, content: str, seq: int) -> asyncio.Future[None]:
        """Save the text so far of a reply, up to batch `seq`; done when it is saved."""
        self._checkpoints[reply_id] = (content, seq)
        return self._queued()

    def heartbeat(self, reply_id: int) -> asyncio.Future[None]:
        self._heartbeats.add(reply_id)
        return self._queued()

    def _queued(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        while self._waiting:
            checkpoints, self._checkpoints = self._checkpoints, {}
            heartbeats, self._heartbeats = self._heartbeats, set()
            waiting, self._waiting = self._waiting, []
            try:
                await _off_the_shared_thread(replies_checkpoint)(
                    checkpoints=checkpoints, heartbeats=heartbeats
                )
            except Exception as exc:
                for future in waiting:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for future in waiting:
                    if not future.done():
                        future.set_result(None)


def _off_the_shared_thread(func: Callable[..., _T]) -> Callable[..., Awaitable[_T]]:
    """`func` as a database call that need not queue on the one thread the sockets'
    database calls share: a turn that ends, or a round of checkpoints, does not wait behind
    the turns starting, nor they behind it (each thread has its own connection). Not on
    SQLite, which takes one writer at a time anyway (and whose shared in-memory test
    database locks whole tables)."""
    parallel = connections["default"].vendor != "sqlite"
    return database_sync_to_async(func, thread_sensitive=not parallel)  # type: ignore[return-value]


_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Writer] = (
    weakref.WeakKeyDictionary()
)


def _writer() -> _Writer:
    loop = asyncio.get_running_loop()
    if loop not in _writers:
        _writers[loop] = _Writer()
    return _writers[loop]


async def launch(turn: Turn) -> Generation | None:
    """Announce a new turn to everyone watching and start its generation."""
    if not turn.created:
        return _running.get(turn.reply.pk)
    group = hub.group_name(turn.conversation.pk)
    removed = turn.superseded
    if turn.kind == NEW:
        shown = frames.turn_started(turn.user_message, turn.reply, removed=removed)
    elif turn.kind == CONTINUE:
        shown = frames.turn_started(replaced=turn.reply)
    else:  # a Retry or Regenerate: a new reply to the same question
        shown = frames.turn_started(turn.reply, removed=removed)
    if turn.request is None:  # refused before any call (no budget): nothing to generate
        # The spend meter and the cost hint say sending is paused until the reset.
        conversation = turn.conversation
        paused = await database_sync_to_async(lambda: figures.spend_for(conversation.owner))()
        await hub.publish(group, shown + frames.spend(paused))
        await hub.spend_changed(conversation.owner_id, shown_in=group)  # and its other pages
        return None
    await hub.publish(group, shown)
    if turn.provider is None:
        raise ValueError("A new turn needs a provider")
    generation = Generation(
        reply_id=turn.reply.pk,
        group=group,
        request=turn.request,
        provider=turn.provider,
        reservation_id=turn.reply.reservation_id,
        input_estimate=turn.input_estimate,
        payer=f"user:{turn.conversation.owner_id}",
        prefix=turn.reply.content if turn.kind == CONTINUE else "",
    )
    generation.task = asyncio.create_task(generation.run(), name=f"reply-{turn.reply.pk}")
    _running[turn.reply.pk] = generation
    listener = (
        asyncio.create_task(_listen_for_stop(generation)) if settings.CHANNEL_LAYER_SHARED else None
    )

    def ended(_task: asyncio.Task[None]) -> None:
        if _running.get(turn.reply.pk) is generation:  # not a Continue that came after
            del _running[turn.reply.pk]
        if listener is not None:
            listener.cancel()

    generation.task.add_done_callback(ended)
    return generation


def _stop_group(reply_id: int) -> str:
    return f"stop-{reply_id}"


async def _listen_for_stop(generation: Generation) -> None:
    """With several processes, Stop may be pressed on a socket held by another one: it
    reaches this generation through the channel layer."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = _stop_group(generation.reply_id)
    await layer.group_add(group, channel)
    try:
        while True:
            message = await layer.receive(channel)
            if message.get("type") == "reply.stop":
                generation.stop()
                return
    finally:
        await layer.group_discard(group, channel)


async def stop(reply_id: int) -> None:
    """Stop a generation, in this process or another. The caller has checked ownership."""
    generation = _running.get(reply_id)
    if generation is not None:
        generation.stop()
    elif settings.CHANNEL_LAYER_SHARED:
        await get_channel_layer().group_send(_stop_group(reply_id), {"type": "reply.stop"})


def running(reply_id: int) -> Generation | None:
    return _running.get(reply_id)


def _finish(
    *,
    reply_id: int,
    reservation_id: int | None,
    attempts: list[meter.Attempt],
    status: str,
    content: str,
    content_html: str,
    stop_reason: str,
    error_detail: str,
) -> tuple[str, int | None, int]:
    """End the turn: settle its reservation (exactly once) and record the reply, together.
    Returns the frame that shows the reply as it ended (and the spend after it), what was
    charged (None if the turn had been settled already) and who pays (the conversation's
    owner, whose every page is told the spend changed)."""
    last = attempts[-1]
    with transaction.atomic():
        charged = None
        if reservation_id is not None:
            charged = meter.settle(reservation_id=reservation_id, attempts=attempts)
        message = reply_finish(
            reply_id=reply_id,
            content=content,
            content_html=content_html,
            status=status,
            input_tokens=last.input_tokens,
            output_tokens=last.output_tokens,
            stop_reason=stop_reason,
            error_kind=last.error_kind,
            error_detail=error_detail,
            upstream_request_id=last.upstream_request_id,
            cost_micros=charged,
        )
    # Rendered here, with the database at hand (what the page offers next depends on it).
    conversation = message.conversation
    frame = (
        frames.message_replaced(message)
        + frames.announce(message)
        + frames.figures(conversation, figures.spend_for(conversation.owner))
    )
    return frame, charged, conversation.owner_id


def _count(
    status: str, attempts: list[meter.Attempt], tries: list[_Try], charged: int | None
) -> None:
    """The turn in the Prometheus metrics."""
    metrics.TURNS.labels(status).inc()
    metrics.RETRIES.inc(max(0, len(tries) - 1))
    for attempt in attempts:
        metrics.TOKENS.labels("input").inc(attempt.input_tokens)
        metrics.TOKENS.labels("output").inc(attempt.output_tokens)
        if attempt.error_kind:
            metrics.UPSTREAM_ERRORS.labels(attempt.error_kind).inc()
    for try_ in tries:
        if try_.first_token_at is not None:
            metrics.TTFT.observe(try_.first_token_at - try_.started_at)
    if charged:
        metrics.SPEND.inc(charged)
