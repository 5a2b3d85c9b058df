"""Fan-out of a conversation's live frames to every socket watching it, and of a reply's
batches to its replay log (`ReplyFeed`).

The per-token path is the hot path (DESIGN.md): sockets in this process get each frame
directly, with no channel-layer round trip. When the channel layer is shared between
processes (Redis), each process marks in Redis the conversations it has sockets watching,
and a frame goes through the channel layer only when another process watches it too (a
process skips frames it made itself).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol

from channels.layers import get_channel_layer
from django.conf import settings

from . import redis_pipe
from .replay import RedisLog, replay_log

log = logging.getLogger(__name__)


class Subscriber(Protocol):
    async def deliver(self, frame: str) -> None: ...


_local: defaultdict[str, set[Subscriber]] = defaultdict(set)


def group_name(conversation_id: object) -> str:
    return f"conv-{conversation_id}"


def _watchers_key(group: str) -> str:
    return f"hub:watchers:{group}"


WATCHERS_EXPIRY_SECONDS = 24 * 3600  # the mark of a process that died without leaving


def _mark(command: str, group: str) -> None:
    """Say in Redis whether this process has sockets watching `group` (SADD or SREM of its
    id), so a generation in another process knows whether to relay its frames. Queued in
    order, not awaited: a read submitted later (the replay log's) runs after it."""
    if not settings.CHANNEL_LAYER_SHARED or not settings.REDIS_URL:
        return
    key = _watchers_key(group)
    commands: list[tuple[object, ...]] = [(command, key, settings.PROCESS_ID)]
    if command == "SADD":
        commands.append(("EXPIRE", key, WATCHERS_EXPIRY_SECONDS))
    try:
        future = redis_pipe.pipeliner(settings.REDIS_URL).submit(*commands)
    except RuntimeError:  # no running event loop (sync code): nothing to relay to
        return
    future.add_done_callback(_log_failure)


def _log_failure(future: asyncio.Future[list[object]]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("could not mark the sockets watching a conversation: %s", future.exception())


def subscribe(group: str, subscriber: Subscriber) -> None:
    first = group not in _local
    _local[group].add(subscriber)
    if first:
        _mark("SADD", group)


def unsubscribe(group: str, subscriber: Subscriber) -> None:
    members = _local.get(group)
    if members is not None:
        members.discard(subscriber)
        if not members:
            del _local[group]
            _mark("SREM", group)


async def publish(group: str, frame: str) -> None:
    """Send `frame` to every socket watching `group`: this process's directly; when
    another process has sockets watching it too, through the channel layer."""
    await deliver(group, frame)
    await relay(group, frame)


async def deliver(group: str, frame: str) -> None:
    """Send `frame` to this process's sockets watching `group`."""
    for subscriber in tuple(_local.get(group, ())):
        try:
            await subscriber.deliver(frame)
        except Exception:  # A socket that went away must not stop the others.
            log.debug("dropping a subscriber of %s that failed to receive", group, exc_info=True)
            unsubscribe(group, subscriber)


def _submit_with_watchers(
    group: str, commands: Sequence[redis_pipe.Command]
) -> asyncio.Future[list[Any]]:
    """Queue Redis `commands` (on REDIS_URL) and, after them, the look-up of the processes
    watching `group` (when the channel layer is shared): one round trip for both. Their
    place in the pipeline's order is fixed on return; the future has their results, the
    watchers last (pass them to `relay`)."""
    if settings.CHANNEL_LAYER_SHARED:
        commands = [*commands, ("SMEMBERS", _watchers_key(group))]
    return redis_pipe.pipeliner(settings.REDIS_URL).submit(*commands)


async def relay(group: str, frame: str, watchers: list[bytes] | None = None) -> None:
    """Send `frame` through the channel layer if another process has sockets watching
    `group` (`watchers`: the look-up's result, if made already)."""
    if not settings.CHANNEL_LAYER_SHARED:
        return
    if not (_elsewhere(watchers) if watchers is not None else await _watched_elsewhere(group)):
        return
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(
            group, {"type": "relay.frame", "frame": frame, "origin": settings.PROCESS_ID}
        )


async def _watched_elsewhere(group: str) -> bool:
    """Whether a process other than this one has sockets watching `group`. Most often
    none has (the socket that asked is in the process that generates): the frame then
    costs one command in a shared pipeline instead of a channel-layer group_send, which
    is several round trips and a receive in this process, for every batch."""
    if not settings.REDIS_URL:
        return True  # a shared layer whose watchers this process cannot know: relay
    [members] = await redis_pipe.run(settings.REDIS_URL, ("SMEMBERS", _watchers_key(group)))
    return _elsewhere(members)


def _elsewhere(members: list[bytes]) -> bool:
    mine = settings.PROCESS_ID.encode()
    return any(member != mine for member in members)


class ReplyFeed:
    """One reply's batches, each logged for replay before anyone can see it (whoever sees
    batch N can find batch N-1), then sent to every socket watching: `send` is the one call,
    whichever log and channel layer are configured."""

    def __init__(self, group: str, reply_id: int) -> None:
        self.group = group
        self.reply_id = reply_id
        self._log = replay_log()
        # With the log in the Redis the channel layer's watchers live in, a batch's logging,
        # the watchers' look-up and the relay to other processes go on beside the stream.
        self._pipelined = isinstance(self._log, RedisLog) and self._log.url == settings.REDIS_URL
        self._reset: asyncio.Future[list[object]] | None = None
        self._relaying: asyncio.Future[None] | None = None  # the last batch's logging and relay

    async def open(self) -> None:
        """Empty the reply's log (a Continue's batches are numbered from 1 again)."""
        log_ = self._log
        if isinstance(log_, RedisLog):
            # Queued ahead of every batch's logging, not waited for: the request leaves now.
            self._reset = redis_pipe.pipeliner(log_.url).submit(*log_.reset_commands(self.reply_id))
            self._reset.add_done_callback(self._reset_failed)
        else:
            await log_.reset(self.reply_id)

    async def send(self, seq: int, frame: str) -> None:
        """Log batch `seq` and send it to everyone watching."""
        if not self._pipelined:
            await self._log.append(self.reply_id, seq, frame)
            await publish(self.group, frame)
            return
        assert isinstance(self._log, RedisLog)
        # The log's commands are queued first (a read of the log in this process comes after
        # them), then this process's sockets get the batch at once, then, once the log has
        # it, other processes watching (the look-up goes in the same round trip). The stream
        # does not wait for Redis: at hundreds of streams a round trip can take longer than
        # a token, and the tokens would fall behind it.
        logged = _submit_with_watchers(
            self.group, self._log.append_commands(self.reply_id, seq, frame)
        )
        await deliver(self.group, frame)
        self._relaying = asyncio.ensure_future(self._relay(self._relaying, logged, frame))

    async def drain(self) -> None:
        """Every batch sent so far logged and relayed."""
        if self._relaying is not None:
            await asyncio.gather(self._relaying, return_exceptions=True)

    async def close(self) -> None:
        """The reply has ended (its final frame is sent): its log is no longer needed."""
        await self.drain()
        if self._reset is not None:
            await asyncio.gather(self._reset, return_exceptions=True)
        await self._log.discard(self.reply_id)

    def _reset_failed(self, reset: asyncio.Future[list[object]]) -> None:
        error = None if reset.cancelled() else reset.exception()
        if error is None and not reset.cancelled():
            error = next((r for r in reset.result() if isinstance(r, Exception)), None)
        if error is not None:
            log.warning("reply %s: the replay log was not emptied: %s", self.reply_id, error)

    async def _relay(
        self,
        previous: asyncio.Future[None] | None,
        logged: asyncio.Future[list[Any]],
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
            await relay(self.group, frame, watchers)
        except Exception:
            log.warning("reply %s: a batch was not logged or relayed", self.reply_id, exc_info=True)
