"""Fan-out of a conversation's live frames to every socket watching it.

The per-token path is the hot path (DESIGN.md): sockets in this process get each frame
directly, with no channel-layer round trip; only when the channel layer is shared between
processes (Redis) does a frame also go through it, and a process skips frames it made itself.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from typing import Protocol

from channels.layers import get_channel_layer
from django.conf import settings

log = logging.getLogger(__name__)


class Subscriber(Protocol):
    async def deliver(self, frame: str) -> None: ...


_local: defaultdict[str, set[Subscriber]] = defaultdict(set)


def group_name(conversation_id: object) -> str:
    return f"conv-{conversation_id}"


def user_group(user_id: int) -> str:
    """Every socket of a person listens here, in every process, for its account closing."""
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


def subscribe(group: str, subscriber: Subscriber) -> None:
    _local[group].add(subscriber)


def unsubscribe(group: str, subscriber: Subscriber) -> None:
    members = _local.get(group)
    if members is not None:
        members.discard(subscriber)
        if not members:
            del _local[group]


def local_count(group: str) -> int:
    return len(_local.get(group, ()))


async def publish(group: str, frame: str) -> None:
    for subscriber in tuple(_local.get(group, ())):
        try:
            await subscriber.deliver(frame)
        except Exception:  # A socket that went away must not stop the others.
            log.debug("dropping a subscriber of %s that failed to receive", group, exc_info=True)
            unsubscribe(group, subscriber)
    if settings.CHANNEL_LAYER_SHARED:
        layer = get_channel_layer()
        if layer is not None:
            await layer.group_send(
                group, {"type": "relay.frame", "frame": frame, "origin": settings.PROCESS_ID}
            )
