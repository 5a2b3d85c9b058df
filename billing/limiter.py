"""The upstream rate limiter: one schedule of request slots per provider and model, shared
by every worker process (in Redis when REDIS_URL is set, else in this process).

It is a scheduler rather than a gate: each request takes the next free slot, spaced
60/UPSTREAM_RPM seconds apart (so 60 a minute go out as one a second, which an upstream
enforcing 60/minute as 1/second accepts), and waits until its slot comes. Waiting is
queueing: the slot tells how many are ahead. An upstream 429 pushes every later slot past
its retry-after, for all processes at once (the shared pause).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings

from chatsite.redis import client as redis_client

# KEYS[1]: the time the next slot is free. ARGV: now, interval, pause-until (or 0).
# Returns the start of the slot taken. Time is float seconds, as strings for Redis.
_TAKE_SLOT = """
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local slot = math.max(now, next_free)
local ttl = math.ceil((slot + interval - now) * 1000) + 60000
redis.call('SET', KEYS[1], tostring(slot + interval), 'PX', ttl)
return tostring(slot)
"""
# KEYS[1]: the time of the last request released. ARGV: now, interval. Releases this one
# (returns 0) if the last left at least an interval ago, else returns how long to wait.
_RELEASE = """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
if now - last >= interval then
  redis.call('SET', KEYS[1], tostring(now), 'PX', math.ceil(interval * 1000) + 60000)
  return '0'
end
return tostring(last + interval - now)
"""
# KEYS[1]: as above. ARGV: now, pause-until. Moves the next free slot past a pause.
_PAUSE = """
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
local until_ = tonumber(ARGV[2])
if until_ > next_free then
  local ttl = math.ceil((until_ - tonumber(ARGV[1])) * 1000) + 60000
  redis.call('SET', KEYS[1], tostring(until_), 'PX', ttl)
end
return 1
"""


class SlotStore(Protocol):
    async def take(self, key: str, now: float, interval: float) -> float: ...
    async def release(self, key: str, now: float, interval: float) -> float: ...
    async def pause(self, key: str, now: float, until: float) -> None: ...


class MemoryStore:
    """Slots for one process: enough for a single worker on a laptop."""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._last: dict[str, float] = {}

    async def take(self, key: str, now: float, interval: float) -> float:
        slot = max(now, self._next.get(key, 0.0))
        self._next[key] = slot + interval
        return slot

    async def release(self, key: str, now: float, interval: float) -> float:
        last = self._last.get(key, 0.0)
        if now - last >= interval:
            self._last[key] = now
            return 0.0
        return last + interval - now

    async def pause(self, key: str, now: float, until: float) -> None:
        self._next[key] = max(self._next.get(key, 0.0), until)


class RedisStore:
    """Slots shared by every process that uses the same Redis."""

    def __init__(self, url: str) -> None:
        self._url = url

    def _client(self):  # type: ignore[no-untyped-def]
        return redis_client(self._url)

    async def take(self, key: str, now: float, interval: float) -> float:
        slot = await self._client().eval(_TAKE_SLOT, 1, key, repr(now), repr(interval))
        return float(slot)

    async def release(self, key: str, now: float, interval: float) -> float:
        wait = await self._client().eval(_RELEASE, 1, key + ":last", repr(now), repr(interval))
        return float(wait)

    async def pause(self, key: str, now: float, until: float) -> None:
        await self._client().eval(_PAUSE, 1, key, repr(now), repr(until))


@dataclass
class Limiter:
    store: SlotStore
    rpm: int
    clock: Callable[[], float] = time.time  # wall clock: shared by processes
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    # Requests leave a little further apart than the upstream's rate, so the jitter of
    # networks and event loops never lands two of them in one upstream slot.
    HEADROOM = 1.05

    @property
    def interval(self) -> float:
        return 60.0 / self.rpm * self.HEADROOM

    async def acquire(
        self, key: str, *, on_queued: Callable[[int, float], Awaitable[None]] | None = None
    ) -> None:
        """Wait for this request's slot. `on_queued(ahead, seconds)` is told first when it
        has to wait, so the page can say so."""
        now = self.clock()
        slot = await self.store.take(f"limiter:{key}", now, self.interval)
        wait = slot - now
        if wait > 0:
            if on_queued is not None:
                await on_queued(round(wait / self.interval), wait)
            await self.sleep(wait)
        # A busy event loop can wake a request late, next to the one after it: requests
        # are released no closer than an interval apart, whatever their slots said.
        while (hold := await self.store.release(f"limiter:{key}", self.clock(), self.interval)) > 0:
            await self.sleep(hold)

    async def pause(self, key: str, seconds: float) -> None:
        """Every process holds back requests to `key` for `seconds` (an upstream 429)."""
        now = self.clock()
        await self.store.pause(f"limiter:{key}", now, now + seconds)


_limiter: Limiter | None = None


def limiter() -> Limiter:
    global _limiter
    if _limiter is None or _limiter.rpm != settings.UPSTREAM_RPM:
        store: SlotStore = RedisStore(settings.REDIS_URL) if settings.REDIS_URL else MemoryStore()
        _limiter = Limiter(store=store, rpm=settings.UPSTREAM_RPM)
    return _limiter
