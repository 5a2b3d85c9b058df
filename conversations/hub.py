"""Fan-out of a conversation's live frames to every socket watching it.

The per-token path is the hot path (DESIGN.md): sockets in this process get each frame
directly, with no channel-layer round trip; only when the channel layer is shared between
processes (Redis) does a frame also go through it, and a process skips frames it made itself.
"""

from __future__ import annotations

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


def close_sockets(user_id: int) -> None:
    """Close every open socket of this person (their account was suspended). From sync
    code: the admin, a signal."""
    from asgiref.sync import async_to_sync

    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(user_group(user_id), {"type": "account.closed"})


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
