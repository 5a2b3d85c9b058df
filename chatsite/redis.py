"""One asyncio Redis client per event loop and URL, for the parts that share state
between worker processes (the queue of upstream slots, the replay log of streamed batches)."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)


POOL_CONNECTIONS = 100
POOL_WAIT_SECONDS = 30


def client(url: str) -> Any:
    """The redis.asyncio client for `url` on the running loop (a client belongs to the
    loop that made it)."""
    import redis.asyncio as redis

    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    if url not in per_loop:
        # A burst of requests beyond the pool waits for a connection instead of failing
        # with "Too many connections" (redis-py's default pool refuses the 101st).
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=POOL_CONNECTIONS, timeout=POOL_WAIT_SECONDS
        )
        per_loop[url] = redis.Redis(connection_pool=pool)
    return per_loop[url]
