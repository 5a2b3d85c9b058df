"""Fan-out of a conversation's live frames to every socket watching it.

The per-token path is the hot path (DESIGN.md): sockets in this process get each frame
directly, with no channel-layer round trip. When the channel layer is shared between
processes (Redis), each process marks in Redis the conversations it has sockets watching,
and a frame goes through the channel layer only when another process watches it too (a
process skips frames it made itself).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol

from channels.layers import get_channel_layer
from django.conf import settings

from . import redis_pipe

log = logging.getLogger(__name__)


class Subscriber(Protocol):
    async def deliver(self, frame: str) -> None: ...


_local: defaultdict[str, set[Subscriber]] = defaultdict(set)


def group_name(conversation_id: object) -> str:
    return f"conv-{conversation_id}"


def user_group(user_id: int) -> str:
    """Every socket of a person listens here, in every process: for its account closing,
    and for their spend changing (spend_changed)."""
    return f"user-{user_id}"


def session_group(session_key: str) -> str:
    """Every socket opened with one sign-in listens here, for that sign-in ending. The key is
    hashed: group names are visible in Redis, a session key is a credential."""
    return "session-" + hashlib.sha256(session_key.encode()).hexdigest()[:32]


def close_sockets(user_id: int) -> None:
    """Close every open socket of this person (their account was suspended). From sync
    code: the admin, a signal."""
    _close(user_group(user_id))


def close_session_sockets(session_key: str) -> None:
    """Close the sockets opened with this sign-in (it signed out); other devices stay."""
    _close(session_group(session_key))


def _close(group: str) -> None:
    from asgiref.sync import async_to_sync

    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(group, {"type": "account.closed"})


async def spend_changed(user_id: int, *, shown_in: str = "") -> None:
    """Tell every open page of this person, in every process, that their spend changed (a
    turn settled, or was refused): each socket renders its spend meter anew, in its own
    page's language. Not per token: once per turn. The sockets watching `shown_in` (the
    turn's conversation group) skip it: the turn's own frame brought them the meter."""
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(user_group(user_id), {"type": "spend.changed", "shown_in": shown_in})


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


def local_count(group: str) -> int:
    return len(_local.get(group, ()))


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


def submit_with_watchers(
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
