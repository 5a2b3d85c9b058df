"""Coalescing a reply's tokens into batches, and saving where it has got to.

Tokens come one by one; the page gets them in batches at most STREAM_BATCH_INTERVAL_MS
apart, each numbered (its sequence number) and formatted as it streams
(streaming_render.py), so a page can tell a missed batch and ask for it again. About once a
second (STREAM_CHECKPOINT_INTERVAL_MS) the text so far is saved with the number of its last
batch: a page loaded from the database continues from the batch after.
"""

from __future__ import annotations

import asyncio
import weakref

from asgiref.sync import sync_to_async
from django.conf import settings

from billing.calls import off_the_shared_thread
from ops import metrics

from . import frames
from .endings import replies_checkpoint
from .fanout import ReplyFeed
from .streaming_render import StreamRenderer


class Batcher:
    """One reply's batches: text in (`add`), numbered, formatted batches out to its feed."""

    def __init__(self, reply_id: int, feed: ReplyFeed, *, prefix: str = "") -> None:
        self.reply_id = reply_id
        self.feed = feed
        self.prefix = prefix  # a continued reply's text before this generation
        self.parts: list[str] = []
        self.seq = 0
        # The page's copy of the reply, formatted as it streams (a Continue's is made in
        # `start`: the text so far is a reply's worth of rendering, done off the event loop).
        self.renderer = StreamRenderer()
        self._pending: list[str] = []
        self._last_flush = 0.0
        self._last_checkpoint = 0.0
        self._flush_timer: asyncio.TimerHandle | None = None
        self._deferred: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()
        self._saving: asyncio.Future[None] | None = None
        self._interval = settings.STREAM_BATCH_INTERVAL_MS / 1000
        self._checkpoint_every = settings.STREAM_CHECKPOINT_INTERVAL_MS / 1000

    @property
    def text(self) -> str:
        return self.prefix + "".join(self.parts)

    async def start(self) -> None:
        if self.prefix:
            self.renderer = await sync_to_async(StreamRenderer, thread_sensitive=False)(self.prefix)
        self._last_checkpoint = asyncio.get_running_loop().time()

    async def add(self, text: str) -> None:
        """More of the reply: sent now if the last batch left long enough ago, else with
        the next one (a timer makes sure it is not held longer than the interval)."""
        self.parts.append(text)
        self._pending.append(text)
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now - self._last_flush >= self._interval:
            await self.flush()
        elif self._flush_timer is None:
            delay = self._last_flush + self._interval - now
            self._flush_timer = loop.call_later(delay, self._deferred_flush)
        if now - self._last_checkpoint >= self._checkpoint_every and self._saved():
            self._last_checkpoint = now
            await self.checkpoint(wait=False)

    def _deferred_flush(self) -> None:
        self._flush_timer = None
        if self._pending:
            self._deferred = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        """Send what is pending as the next batch."""
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
            await self.feed.send(self.seq, frames.batch(self.reply_id, self.seq, ops))

    async def checkpoint(self, *, wait: bool = True) -> None:
        """Save the text so far with the sequence number of its last batch, so a page
        loaded from it continues from the batch after. Without `wait`, the save goes on
        beside the stream: tokens keep flowing while the database writes."""
        await self.flush()  # the saved text and the batches sent agree
        save = writer().checkpoint(self.reply_id, self.text, self.seq)
        if wait:
            await save
        else:
            self._saving = save

    def _saved(self) -> bool:
        """No checkpoint is being written (one at a time per reply)."""
        return self._saving is None or self._saving.done()

    async def drain(self) -> None:
        """Everything added sent and logged, and the last checkpoint written."""
        await self.flush()
        await self.feed.drain()
        if self._saving is not None:
            await asyncio.gather(self._saving, return_exceptions=True)


class Writer:
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
        """Show recovery the reply's turn is alive."""
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
                await off_the_shared_thread(replies_checkpoint)(
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


_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Writer] = weakref.WeakKeyDictionary()


def writer() -> Writer:
    """The running event loop's writer."""
    loop = asyncio.get_running_loop()
    if loop not in _writers:
        _writers[loop] = Writer()
    return _writers[loop]
