"""The upstream's slots, handed out fairly: a queue instead of a first-come schedule.

Every remote model takes UPSTREAM_RPM requests a minute, spread evenly (one slot every
60/UPSTREAM_RPM seconds, with a little headroom). Requests wait in a queue and each slot goes
to the next request in this order:

1. priority class: `interactive` (a chat turn) before `api` before `batch`;
2. a `batch` request waiting longer than SCHEDULER_MAX_WAIT_BATCH is served before new `api`
   ones (and in the order it arrived), so a batch is never starved for ever;
3. within a class, round-robin between people: a person with 20 requests waiting delays
   someone else's first one by one slot at most.

A request that gives up (Stop while queued, a closed API connection, a cancelled batch)
leaves the queue, and its slot goes to the next one. A waiting request is told its true
position (how many will be served before it, as the queue stands), again whenever it changes.
An upstream 429 pauses everyone past its retry-after.

The queue lives in Redis when REDIS_URL is set, shared by every process and host (Lua scripts,
one atomic step each, on Redis's own clock), else in this process. No process polls while
nobody waits: a process with requests waiting wakes when the next slot is due (or every
second, to refresh positions and say it is alive), hands the slot to whoever is next in the
whole queue, and picks up the slots handed to its own requests. A request of a process that
stopped saying it is alive is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from django.conf import settings

from chatsite.redis import client as redis_client


class Priority(StrEnum):
    INTERACTIVE = "interactive"
    API = "api"
    BATCH = "batch"


OnQueued = Callable[[int, float], Awaitable[None]]
HEADROOM = 1.05  # slots a little further apart than the upstream's rate: jitter never doubles one
# Slots fall due one interval apart whether or not a process is there to hand them out that
# instant. For an upstream faster than a slot every CATCH_UP_SECONDS, a tick hands out every
# slot that fell due in the last CATCH_UP_SECONDS less one interval (older ones are gone):
# a busy event loop that ticks late does not slow it to one request a tick, and no second
# gets more than its share (the window is shorter than the headroom). A slower upstream's
# slots are one interval apart from the last one handed out, as they fall.
CATCH_UP_SECONDS = 0.025


def _catch_up(interval: float) -> float:
    return max(0.0, CATCH_UP_SECONDS - interval)


@dataclass(frozen=True)
class Tick:
    """What one step of the queue said to a process."""

    granted: list[str]  # this process's requests that got a slot now
    next_at: float  # when the next slot is free (the queue's clock)
    now: float  # the queue's clock
    waiting: int  # requests waiting, everyone's
    version: int  # changes whenever the queue does
    lost: list[str] = field(default_factory=list)  # waiting rids the queue no longer holds


class Queue(Protocol):
    async def join(self, key: str, rid: str, cls: str, who: str, owner: str) -> None: ...
    async def leave(self, key: str, rid: str) -> bool: ...
    async def tick(self, key: str, owner: str, interval: float, waiting: list[str]) -> Tick: ...
    async def positions(self, key: str, rids: list[str]) -> list[int]: ...
    async def pause(self, key: str, seconds: float) -> None: ...


# --- in this process ---------------------------------------------------------------------
@dataclass
class _Entry:
    cls: str
    who: str
    owner: str
    joined: float


@dataclass
class _Line:
    """One model's queue in memory: what the Redis keys hold, as Python objects."""

    entries: dict[str, _Entry] = field(default_factory=dict)
    queues: dict[tuple[str, str], deque[str]] = field(default_factory=dict)  # (cls, who)
    turns: dict[str, deque[str]] = field(default_factory=dict)  # cls -> people, in turn
    next_at: float = 0.0
    version: int = 0
    granted: dict[str, list[str]] = field(default_factory=dict)  # owner -> rids


class MemoryQueue:
    """The queue of one process: enough for a single worker on a laptop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lines: dict[str, _Line] = {}

    def _line(self, key: str) -> _Line:
        return self._lines.setdefault(key, _Line())

    async def join(self, key: str, rid: str, cls: str, who: str, owner: str) -> None:
        line = self._line(key)
        if rid in line.entries:  # once only
            return
        line.entries[rid] = _Entry(cls, who, owner, self.clock())
        queue = line.queues.setdefault((cls, who), deque())
        queue.append(rid)
        if len(queue) == 1:
            line.turns.setdefault(cls, deque()).append(who)
        line.version += 1

    def _remove(self, line: _Line, rid: str) -> _Entry:
        entry = line.entries.pop(rid)
        queue = line.queues[(entry.cls, entry.who)]
        queue.remove(rid)
        if not queue:
            del line.queues[(entry.cls, entry.who)]
            line.turns[entry.cls].remove(entry.who)
        line.version += 1
        return entry

    async def leave(self, key: str, rid: str) -> bool:
        line = self._line(key)
        if rid not in line.entries:
            return False
        self._remove(line, rid)
        return True

    def _next_in_turn(self, line: _Line, cls: str) -> str | None:
        people = line.turns.get(cls)
        return line.queues[(cls, people[0])][0] if people else None

    def _aged(self, line: _Line, now: float) -> list[str]:
        limit = now - settings.SCHEDULER_MAX_WAIT_BATCH
        old = [
            (e.joined, r) for r, e in line.entries.items() if e.cls == "batch" and e.joined <= limit
        ]
        return [rid for _, rid in sorted(old)]

    def _next(self, line: _Line, now: float) -> str | None:
        aged = self._aged(line, now)
        return (
            self._next_in_turn(line, Priority.INTERACTIVE)
            or (aged[0] if aged else None)
            or self._next_in_turn(line, Priority.API)
            or self._next_in_turn(line, Priority.BATCH)
        )

    async def tick(self, key: str, owner: str, interval: float, waiting: list[str]) -> Tick:
        line, now = self._line(key), self.clock()
        next_at = max(line.next_at, now - _catch_up(interval))
        while now >= next_at and (rid := self._next(line, now)) is not None:
            entry = line.entries[rid]
            people = line.turns[entry.cls]
            if people[0] == entry.who:  # served in turn: the person goes to the back
                people.rotate(-1)
            self._remove(line, rid)
            line.granted.setdefault(entry.owner, []).append(rid)
            next_at += interval
            line.next_at = next_at
        mine = line.granted.pop(owner, [])
        lost = [rid for rid in waiting if rid not in line.entries and rid not in mine]
        return Tick(mine, line.next_at, now, len(line.entries), line.version, lost)

    async def positions(self, key: str, rids: list[str]) -> list[int]:
        line = self._line(key)
        aged = self._aged(line, self.clock())
        waiting = {cls: 0 for cls in Priority}
        for entry in line.entries.values():
            waiting[Priority(entry.cls)] += 1
        return [_position(line, rid, aged, waiting) for rid in rids]

    async def pause(self, key: str, seconds: float) -> None:
        line = self._line(key)
        line.next_at = max(line.next_at, self.clock() + seconds)


def _in_turn_ahead(line: _Line, cls: str, who: str, rid: str) -> int:
    """How many of class `cls` are served before `rid`, people taken in turn: each round
    serves everyone with requests left once, in the order of `turns` (a person served goes
    to the back, so the order holds from round to round)."""
    people = list(line.turns.get(cls, ()))
    index = line.queues[(cls, who)].index(rid)
    mine = people.index(who)
    ahead = 0
    for place, person in enumerate(people):
        length = len(line.queues[(cls, person)])
        ahead += min(length, index) + (1 if place < mine and length > index else 0)
    return ahead


def _position(line: _Line, rid: str, aged: list[str], waiting: dict[Priority, int]) -> int:
    """How many requests will be served before `rid`, as the queue stands: exact but for
    aged batch requests, which are served before their turn (a batch request's count does
    not include aged ones behind it in turn)."""
    entry = line.entries.get(rid)
    if entry is None:
        return -1
    in_turn = _in_turn_ahead(line, entry.cls, entry.who, rid)
    if entry.cls == Priority.INTERACTIVE:
        return in_turn
    if rid in aged:
        return waiting[Priority.INTERACTIVE] + aged.index(rid)
    if entry.cls == Priority.API:
        return waiting[Priority.INTERACTIVE] + len(aged) + in_turn
    return waiting[Priority.INTERACTIVE] + waiting[Priority.API] + in_turn


# --- in Redis, shared by every process ---------------------------------------------------
# Keys, under P = "sched:<provider:model>": P:meta (hash rid -> "cls|who|owner|joined"),
# P:q:<cls>:<who> (a person's requests, oldest first), P:turns:<cls> (people with requests,
# in turn), P:aged (batch rids by time joined), P:owners (process -> last seen), P:got:<owner>
# (rids granted to that process's requests), P:next (when the next slot is free), P:ver.
# Time is Redis's own (TIME): hosts' clocks may differ, the queue's does not.
_LUA_COMMON = """
local p = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function parse(rid)
  local m = redis.call('HGET', p .. ':meta', rid)
  if not m then return nil end
  local cls, who, owner, joined = string.match(m, '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
  return cls, who, owner, tonumber(joined)
end
local function unlink(rid, cls, who)
  local q = p .. ':q:' .. cls .. ':' .. who
  redis.call('LREM', q, 1, rid)
  if redis.call('LLEN', q) == 0 then redis.call('LREM', p .. ':turns:' .. cls, 0, who) end
  redis.call('HDEL', p .. ':meta', rid)
  redis.call('ZREM', p .. ':aged', rid)
  redis.call('INCR', p .. ':ver')
end
"""
# ARGV: P, rid, cls, who, owner
_JOIN = (
    _LUA_COMMON
    + """
local rid, cls, who, owner = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
-- Once only: a request joining again (its process thought it lost) is not queued twice.
if redis.call('HEXISTS', p .. ':meta', rid) == 1 then return 0 end
redis.call('HSET', p .. ':meta', rid, cls .. '|' .. who .. '|' .. owner .. '|' .. tostring(now))
local q = p .. ':q:' .. cls .. ':' .. who
if redis.call('RPUSH', q, rid) == 1 then redis.call('RPUSH', p .. ':turns:' .. cls, who) end
if cls == 'batch' then redis.call('ZADD', p .. ':aged', now, rid) end
redis.call('ZADD', p .. ':owners', now, owner)
redis.call('INCR', p .. ':ver')
return 1
"""
)
# ARGV: P, rid. Returns 1 if it was waiting (it leaves), 0 if not (granted, or unknown).
_LEAVE = (
    _LUA_COMMON
    + """
local cls, who = parse(ARGV[2])
if not cls then return 0 end
unlink(ARGV[2], cls, who)
return 1
"""
)
# ARGV: P, owner, interval, lease, max wait of batch, then this process's waiting rids.
# Hands the slot out if it is due (to the first request whose process is alive), then
# returns this process's granted rids, and those of its waiting rids the queue does not
# hold (lost: Redis restarted empty, or the process was taken for gone): they join again.
_TICK = (
    _LUA_COMMON
    + """
local owner, interval = ARGV[2], tonumber(ARGV[3])
local lease, max_wait = tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZADD', p .. ':owners', now, owner)
redis.call('ZREMRANGEBYSCORE', p .. ':owners', '-inf', now - 10 * lease)
-- The first request of a class in turn. A list entry without its record (which a crash
-- between two steps could leave) is dropped, never served.
local function in_turn(cls)
  local turns = p .. ':turns:' .. cls
  while true do
    local who = redis.call('LINDEX', turns, 0)
    if not who then return nil end
    local q = p .. ':q:' .. cls .. ':' .. who
    local rid = redis.call('LINDEX', q, 0)
    if rid and redis.call('HEXISTS', p .. ':meta', rid) == 1 then return rid end
    if rid then redis.call('LPOP', q) end
    if redis.call('LLEN', q) == 0 then redis.call('LREM', turns, 0, who) end
  end
end
local function aged()
  while true do
    local oldest = redis.call('ZRANGE', p .. ':aged', 0, 0, 'WITHSCORES')
    if #oldest == 0 or tonumber(oldest[2]) > now - max_wait then return nil end
    if redis.call('HEXISTS', p .. ':meta', oldest[1]) == 1 then return oldest[1] end
    redis.call('ZREM', p .. ':aged', oldest[1])
  end
end
local catch_up = math.max(0, CATCH_UP - interval)
local next_at = math.max(tonumber(redis.call('GET', p .. ':next') or '0'), now - catch_up)
while now >= next_at do
  local rid = in_turn('interactive') or aged() or in_turn('api') or in_turn('batch')
  if not rid then break end
  local cls, who, holder = parse(rid)
  local turns = p .. ':turns:' .. cls
  if redis.call('LINDEX', turns, 0) == who then
    redis.call('LMOVE', turns, turns, 'LEFT', 'RIGHT')
  end
  unlink(rid, cls, who)
  local seen = tonumber(redis.call('ZSCORE', p .. ':owners', holder) or '0')
  if seen >= now - lease then
    redis.call('RPUSH', p .. ':got:' .. holder, rid)
    redis.call('EXPIRE', p .. ':got:' .. holder, 600)
    next_at = next_at + interval
    redis.call('SET', p .. ':next', tostring(next_at), 'PX', math.ceil(interval * 1000) + 60000)
  end
end
local mine = redis.call('LRANGE', p .. ':got:' .. owner, 0, -1)
redis.call('DEL', p .. ':got:' .. owner)
local granted = {}
for _, rid in ipairs(mine) do granted[rid] = true end
local lost = {}
for i = 6, #ARGV do
  local rid = ARGV[i]
  if not granted[rid] and redis.call('HEXISTS', p .. ':meta', rid) == 0 then
    lost[#lost + 1] = rid
  end
end
local ver = redis.call('GET', p .. ':ver') or '0'
return {mine, tostring(next_at), tostring(now), redis.call('HLEN', p .. ':meta'), ver, lost}
""".replace("CATCH_UP", repr(CATCH_UP_SECONDS))
)
# ARGV: P, max wait of batch, rid... Returns each rid's position (-1: not waiting); the
# same count as MemoryQueue's _position.
_POSITIONS = (
    _LUA_COMMON
    + """
local limit = now - tonumber(ARGV[2])
-- Each class's people in turn, their queues' lengths and the class's total: read once.
local classes = {}
local function class(cls)
  if not classes[cls] then
    local people = redis.call('LRANGE', p .. ':turns:' .. cls, 0, -1)
    local lengths, places, total = {}, {}, 0
    for place, who in ipairs(people) do
      lengths[place] = redis.call('LLEN', p .. ':q:' .. cls .. ':' .. who)
      places[who] = place
      total = total + lengths[place]
    end
    classes[cls] = {lengths = lengths, places = places, total = total}
  end
  return classes[cls]
end
local function waiting(cls) return class(cls).total end
local function in_turn_ahead(cls, who, rid)
  local c = class(cls)
  local index = redis.call('LPOS', p .. ':q:' .. cls .. ':' .. who, rid)
  local mine = c.places[who]
  if not index or not mine then return -1 end
  local ahead = 0
  for place, length in ipairs(c.lengths) do
    ahead = ahead + math.min(length, index)
    if place < mine and length > index then ahead = ahead + 1 end
  end
  return ahead
end
local aged = redis.call('ZCOUNT', p .. ':aged', '-inf', limit)
local out = {}
for i = 3, #ARGV do
  local rid = ARGV[i]
  local cls, who, owner, joined = parse(rid)
  local ahead = -1
  if not cls then
    ahead = -1
  elseif cls == 'interactive' then
    ahead = in_turn_ahead(cls, who, rid)
  elseif cls == 'batch' and joined <= limit then
    ahead = waiting('interactive') + redis.call('ZCOUNT', p .. ':aged', '-inf', '(' .. joined)
  elseif cls == 'api' then
    ahead = waiting('interactive') + aged + in_turn_ahead(cls, who, rid)
  elseif cls == 'batch' then
    ahead = waiting('interactive') + waiting('api') + in_turn_ahead(cls, who, rid)
  end
  out[#out + 1] = ahead
end
return out
"""
)
# ARGV: P, seconds. No slot before now + seconds.
_PAUSE = (
    _LUA_COMMON
    + """
local until_ = now + tonumber(ARGV[2])
local next_at = tonumber(redis.call('GET', p .. ':next') or '0')
if until_ > next_at then
  redis.call('SET', p .. ':next', tostring(until_), 'PX', math.ceil((until_ - now) * 1000) + 60000)
end
return 1
"""
)


class RedisQueue:
    """The queue shared by every process and host that uses the same Redis."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._scripts: dict[str, Any] = {}

    async def _run(self, script: str, key: str, *args: object) -> Any:
        """Run one of the scripts by its digest (EVALSHA; loaded on first use)."""
        client = redis_client(self._url)
        if script not in self._scripts:
            self._scripts[script] = client.register_script(script)
        return await self._scripts[script](args=[f"sched:{key}", *map(str, args)], client=client)

    async def join(self, key: str, rid: str, cls: str, who: str, owner: str) -> None:
        await self._run(_JOIN, key, rid, cls, who, owner)

    async def leave(self, key: str, rid: str) -> bool:
        return bool(await self._run(_LEAVE, key, rid))

    async def tick(self, key: str, owner: str, interval: float, waiting: list[str]) -> Tick:
        mine, next_at, now, count, version, lost = await self._run(
            _TICK, key, owner, repr(interval), _lease(interval),
            settings.SCHEDULER_MAX_WAIT_BATCH, *waiting,
        )  # fmt: skip
        return Tick(
            [rid.decode() for rid in mine],
            float(next_at),
            float(now),
            int(count),
            int(version),
            [rid.decode() for rid in lost],
        )

    async def positions(self, key: str, rids: list[str]) -> list[int]:
        if not rids:
            return []
        found = await self._run(_POSITIONS, key, settings.SCHEDULER_MAX_WAIT_BATCH, *rids)
        return [int(n) for n in found]

    async def pause(self, key: str, seconds: float) -> None:
        await self._run(_PAUSE, key, repr(seconds))


def _lease(interval: float) -> float:
    """A process not heard from for this long is gone: its requests are skipped."""
    return max(settings.SCHEDULER_LEASE_SECONDS, 3 * interval + REFRESH_SECONDS)


# --- waiting -----------------------------------------------------------------------------
REFRESH_SECONDS = 1.0  # positions refreshed, and this process seen alive, this often


@dataclass
class _Waiter:
    granted: asyncio.Future[None]
    on_queued: OnQueued | None
    priority: str
    who: str
    joined: bool = False  # its join has reached the queue
    told: int | None = None


@dataclass
class _Dispatcher:
    """A process's requests waiting for one model's slots; runs only while there are any."""

    waiters: dict[str, _Waiter] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    version: int = -1


@dataclass
class Scheduler:
    queue: Queue
    rpm: int
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    _dispatchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Dispatcher]] = (
        field(default_factory=weakref.WeakKeyDictionary)
    )

    @property
    def interval(self) -> float:
        return 60.0 / self.rpm * HEADROOM

    async def acquire(
        self,
        key: str,
        *,
        who: str,
        priority: Priority = Priority.INTERACTIVE,
        on_queued: OnQueued | None = None,
    ) -> None:
        """Wait for a slot of `key` (a provider and model). `who` pays (a person, later an API
        key); `on_queued(ahead, seconds)` hears the request's position whenever it changes
        while it waits. Cancelled, the request leaves the queue (its slot goes to the next)."""
        rid = uuid.uuid4().hex
        dispatcher = self._dispatcher(key)
        who = who.replace("|", "/")  # the queue's separator
        waiter = _Waiter(asyncio.get_running_loop().create_future(), on_queued, priority, who)
        dispatcher.waiters[rid] = waiter
        try:
            await self.queue.join(key, rid, waiter.priority, who, self.owner)
            waiter.joined = True
            dispatcher.wake.set()
            if dispatcher.task is None or dispatcher.task.done():
                dispatcher.task = asyncio.create_task(self._dispatch(key, dispatcher))
            await waiter.granted
        except BaseException:
            # Cancelling this task cancels the future it waits on: a cancelled future was
            # never granted.
            if waiter.granted.cancelled() or not waiter.granted.done():
                # Shielded: a cancelled request still leaves the queue before it goes, and
                # the others hear their new places.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.queue.leave(key, rid))
                dispatcher.wake.set()
            raise
        finally:
            dispatcher.waiters.pop(rid, None)

    async def pause(self, key: str, seconds: float) -> None:
        """No request to `key` leaves for `seconds`, from any process (an upstream 429)."""
        await self.queue.pause(key, seconds)

    def _dispatcher(self, key: str) -> _Dispatcher:
        per_loop = self._dispatchers.setdefault(asyncio.get_running_loop(), {})
        return per_loop.setdefault(key, _Dispatcher())

    async def _dispatch(self, key: str, dispatcher: _Dispatcher) -> None:
        while dispatcher.waiters:
            dispatcher.wake.clear()
            try:
                waiting = [
                    rid
                    for rid, w in dispatcher.waiters.items()
                    if w.joined and not w.granted.done()
                ]
                tick = await self.queue.tick(key, self.owner, self.interval, waiting)
                for rid in tick.granted:
                    waiter = dispatcher.waiters.get(rid)
                    if waiter is not None and not waiter.granted.done():
                        waiter.granted.set_result(None)
                if tick.lost:
                    await self._rejoin(key, dispatcher, tick.lost)
                    continue
                await self._tell(key, dispatcher, tick)
                if tick.waiting:  # until the next slot
                    pause = min(max(0.0, tick.next_at - tick.now), REFRESH_SECONDS)
                else:  # nobody waits (a join in flight wakes this when it lands)
                    pause = REFRESH_SECONDS
            except Exception:
                pause = REFRESH_SECONDS  # the queue's store is away: try again shortly
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(dispatcher.wake.wait(), pause)

    async def _rejoin(self, key: str, dispatcher: _Dispatcher, lost: list[str]) -> None:
        """The queue lost some of this process's requests (its Redis restarted empty, or
        another process took this one for gone while its loop was stuck): they join again,
        in the order they came. Joining is once only, so a request that was not lost after
        all is not queued twice."""
        missing = set(lost)
        for rid, waiter in list(dispatcher.waiters.items()):
            if rid in missing and not waiter.granted.done():
                await self.queue.join(key, rid, waiter.priority, waiter.who, self.owner)

    async def _tell(self, key: str, dispatcher: _Dispatcher, tick: Tick) -> None:
        """Positions to the requests that want them, when the queue changed."""
        if tick.version == dispatcher.version:
            return
        dispatcher.version = tick.version
        listening = [
            (rid, w)
            for rid, w in dispatcher.waiters.items()
            if w.on_queued is not None and not w.granted.done()
        ]
        if not listening:
            return
        found = await self.queue.positions(key, [rid for rid, _ in listening])
        to_next = max(0.0, tick.next_at - tick.now)
        for (_rid, waiter), ahead in zip(listening, found, strict=True):
            if ahead >= 0 and ahead != waiter.told and waiter.on_queued is not None:
                waiter.told = ahead
                await waiter.on_queued(ahead, to_next + ahead * self.interval)


_scheduler: Scheduler | None = None


def scheduler() -> Scheduler:
    """This process's scheduler (a new one if the rate or the store changed)."""
    global _scheduler
    shared = bool(settings.REDIS_URL)
    if (
        _scheduler is None
        or _scheduler.rpm != settings.UPSTREAM_RPM
        or isinstance(_scheduler.queue, RedisQueue) != shared
    ):
        queue: Queue = RedisQueue(settings.REDIS_URL) if shared else MemoryQueue()
        _scheduler = Scheduler(queue=queue, rpm=settings.UPSTREAM_RPM)
    return _scheduler
