"""One asyncio Redis client per event loop and URL, for the parts that share state
between worker processes (the queue of upstream slots, the replay log of streamed batches)."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)


def client(url: str) -> Any:
    """The redis.asyncio client for `url` on the running loop (a client belongs to the
    loop that made it)."""
    import redis.asyncio as redis

    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    if url not in per_loop:
        per_loop[url] = redis.Redis.from_url(url)
    return per_loop[url]
