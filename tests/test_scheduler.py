"""The fair scheduler of upstream slots: chat first, people in turn, gone requests leave.

Each behaviour runs on the in-process queue and on the Redis one (shared by processes).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from billing.scheduler import MemoryQueue, Priority, RedisQueue, Scheduler

from .conftest import require

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
QUEUES = ["memory", "redis"]


@pytest.fixture
def make(request):
    """A scheduler on the queue the test is parametrized with, at `rpm`."""

    def build(kind: str, rpm: int) -> Scheduler:
        if kind == "memory":
            return Scheduler(queue=MemoryQueue(), rpm=rpm)
        import redis

        try:
            redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        except Exception as exc:
            require("Redis", f"cannot reach {REDIS_URL}: {exc}")
        return Scheduler(queue=RedisQueue(REDIS_URL), rpm=rpm)

    return build


class Log:
    """Who got a slot, in order."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.times: dict[str, float] = {}

    async def take(self, scheduler: Scheduler, key: str, name: str, **kwargs: object) -> None:
        await scheduler.acquire(key, **kwargs)  # type: ignore[arg-type]
        self.order.append(name)
        self.times[name] = time.monotonic()


async def until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.01)


def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()


@pytest.mark.parametrize("kind", QUEUES)
async def test_requests_go_out_one_slot_apart_and_are_told_their_place(kind, make):
    scheduler, key, log = make(kind, 600), uuid.uuid4().hex, Log()  # a slot every 105 ms
    told: dict[str, list[int]] = {}

    def taking(name: str) -> asyncio.Task[None]:
        async def on_queued(ahead: int, seconds: float) -> None:
            told.setdefault(name, []).append(ahead)

        return asyncio.create_task(log.take(scheduler, key, name, who=name, on_queued=on_queued))

    # Five at the same instant: one goes at once, the others one slot apart.
    await asyncio.wait_for(asyncio.gather(*(taking(f"r{n}") for n in range(5))), 10)
    times = [log.times[name] for name in log.order]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) > 0.8 * scheduler.interval, gaps
    assert times[-1] - times[0] < 4 * scheduler.interval + 0.5, gaps
    # Each waiting one heard how many go before it, counting down to none as they went.
    waited = [told[name] for name in log.order[1:]]
    assert sorted(places[0] for places in waited) == [0, 1, 2, 3]
    for places in waited:
        assert places == list(range(places[0], -1, -1)), waited


@pytest.mark.parametrize("kind", QUEUES)
async def test_a_fast_upstream_is_not_slowed_to_one_request_a_tick(kind, make):
    """With slots far closer together than a round trip (the local simulator, a fast
    upstream), each tick hands out every slot that fell due since the last one: a burst of
    requests goes out in a few ticks, not one tick each (at 25 turns a second on a busy
    event loop, one a tick queued them for minutes; bench/RESULTS.md, 2026-12-02)."""
    scheduler, key, log = make(kind, 100_000_000), uuid.uuid4().hex, Log()
    ticks = 0
    tick = scheduler.queue.tick

    async def counted(*args: object) -> object:
        nonlocal ticks
        ticks += 1
        await asyncio.sleep(0.005)  # a round trip on a busy loop
        return await tick(*args)  # type: ignore[arg-type]

    scheduler.queue.tick = counted  # type: ignore[method-assign]
    names = [f"r{n}" for n in range(200)]
    await asyncio.wait_for(
        asyncio.gather(*(log.take(scheduler, key, name, who=name) for name in names)), 30
    )
    assert sorted(log.order) == sorted(names)
    assert ticks < 40, ticks


@pytest.mark.parametrize("kind", QUEUES)
async def test_someone_elses_first_request_waits_one_slot_at_most(kind, make):
    scheduler, key, log = make(kind, 600), uuid.uuid4().hex, Log()
    alice = [
        asyncio.create_task(log.take(scheduler, key, f"alice-{n}", who="alice")) for n in range(30)
    ]
    await until(lambda: len(log.order) >= 2)  # alice's requests are being served
    before = len(log.order)
    bob = asyncio.create_task(log.take(scheduler, key, "bob", who="bob"))
    await asyncio.wait_for(bob, 10)
    assert log.order.index("bob") - before <= 1, log.order
    cancel_all(alice)


@pytest.mark.parametrize("kind", QUEUES)
async def test_a_chat_message_goes_ahead_of_100_queued_batch_requests(kind, make):
    scheduler, key, log = make(kind, 600), uuid.uuid4().hex, Log()
    batch = [
        asyncio.create_task(
            log.take(scheduler, key, f"b-{n}", who=f"p{n % 4}", priority=Priority.BATCH)
        )
        for n in range(100)
    ]
    await until(lambda: len(log.order) >= 2)
    before = len(log.order)
    chat = asyncio.create_task(
        log.take(scheduler, key, "chat", who="carol", priority=Priority.INTERACTIVE)
    )
    await asyncio.wait_for(chat, 10)
    assert log.order.index("chat") - before <= 1, log.order
    cancel_all(batch)


@pytest.mark.parametrize("kind", QUEUES)
async def test_api_requests_go_before_batch_and_after_chat(kind, make):
    scheduler, key, log = make(kind, 600), uuid.uuid4().hex, Log()
    await scheduler.pause(key, 0.5)  # everything below is queued before the first slot
    tasks = [
        asyncio.create_task(log.take(scheduler, key, "batch", who="a", priority=Priority.BATCH)),
        asyncio.create_task(log.take(scheduler, key, "api", who="a", priority=Priority.API)),
        asyncio.create_task(log.take(scheduler, key, "chat", who="a")),
    ]
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert log.order == ["chat", "api", "batch"]


@pytest.mark.parametrize("kind", QUEUES)
async def test_a_cancelled_request_gives_its_slot_to_the_next(kind, make):
    scheduler, key, log = make(kind, 300), uuid.uuid4().hex, Log()  # a slot every 210 ms
    first = asyncio.create_task(log.take(scheduler, key, "first", who="a"))
    await until(lambda: "first" in log.order)
    gone = asyncio.create_task(log.take(scheduler, key, "gone", who="b"))
    third = asyncio.create_task(log.take(scheduler, key, "third", who="c"))
    await asyncio.sleep(scheduler.interval / 3)
    gone.cancel()
    await asyncio.wait_for(third, 10)
    await first
    assert "gone" not in log.order
    gap = log.times["third"] - log.times["first"]
    # One interval after the first, not two: the cancelled request took no slot.
    assert gap < 1.5 * scheduler.interval, gap


@pytest.mark.parametrize("kind", QUEUES)
async def test_positions_told_are_exact_after_cancellations(kind, make):
    scheduler, key, log = make(kind, 600), uuid.uuid4().hex, Log()
    await scheduler.pause(key, 3.0)  # nothing is served while the queue is arranged
    told: dict[str, int] = {}
    tasks: dict[str, asyncio.Task[None]] = {}

    def join(name: str, who: str) -> None:
        async def on_queued(ahead: int, seconds: float) -> None:
            told[name] = ahead

        tasks[name] = asyncio.create_task(
            log.take(scheduler, key, name, who=who, on_queued=on_queued)
        )

    # People in turn: alice, bob, carol; served a1 b1 c1 a2 b2 a3. One at a time, so
    # they join in this order (on Redis, requests sent at once may arrive in any order).
    people = [("a1", "alice"), ("a2", "alice"), ("a3", "alice")]
    people += [("b1", "bob"), ("b2", "bob"), ("c1", "carol")]
    for name, who in people:
        join(name, who)
        await until(lambda name=name: name in told)
    expected = {"a1": 0, "b1": 1, "c1": 2, "a2": 3, "b2": 4, "a3": 5}
    await until(lambda: told == expected)

    tasks.pop("b1").cancel()
    told.pop("b1")
    expected = {"a1": 0, "b2": 1, "c1": 2, "a2": 3, "a3": 4}
    await until(lambda: told == expected)

    tasks.pop("a1").cancel()
    told.pop("a1")
    expected = {"a2": 0, "b2": 1, "c1": 2, "a3": 3}
    await until(lambda: told == expected)

    await asyncio.wait_for(asyncio.gather(*tasks.values()), 15)
    # And they were served in the order they were told.
    assert log.order == sorted(expected, key=expected.__getitem__)


@pytest.mark.parametrize("kind", QUEUES)
async def test_a_pause_holds_back_every_waiting_request(kind, make):
    scheduler, key, log = make(kind, 6000), uuid.uuid4().hex, Log()
    await scheduler.acquire(key, who="a")
    paused_at = time.monotonic()
    await scheduler.pause(key, 0.5)  # an upstream 429 with retry-after: 0.5
    await asyncio.wait_for(log.take(scheduler, key, "after", who="b"), 10)
    assert log.times["after"] - paused_at >= 0.45


@pytest.mark.parametrize("kind", QUEUES)
async def test_a_batch_request_waiting_too_long_goes_before_new_api_ones(kind, make, settings):
    settings.SCHEDULER_MAX_WAIT_BATCH = 0  # every batch request has waited long enough
    scheduler, key, log = make(kind, 600), uuid.uuid4().hex, Log()
    await scheduler.pause(key, 0.5)
    tasks = [
        asyncio.create_task(log.take(scheduler, key, "batch", who="a", priority=Priority.BATCH)),
        asyncio.create_task(log.take(scheduler, key, "api", who="b", priority=Priority.API)),
        asyncio.create_task(log.take(scheduler, key, "chat", who="c")),
    ]
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert log.order == ["chat", "batch", "api"]


async def test_the_requests_of_a_process_that_is_gone_are_skipped(make, settings):
    settings.SCHEDULER_LEASE_SECONDS = 1
    key, log = uuid.uuid4().hex, Log()
    alive, gone = make("redis", 600), make("redis", 600)
    await gone.pause(key, 2.0)
    orphan = asyncio.create_task(log.take(gone, key, "orphan", who="a"))
    await asyncio.sleep(0.2)
    # The process dies: its dispatcher stops saying it is alive; its request stays queued.
    for dispatcher in gone._dispatchers[asyncio.get_running_loop()].values():
        assert dispatcher.task is not None
        dispatcher.task.cancel()
    await asyncio.wait_for(log.take(alive, key, "living", who="b"), 10)
    assert log.order == ["living"]
    orphan.cancel()


@pytest.mark.slow
def test_two_processes_never_exceed_the_rate_in_any_second(make):
    make("redis", 600)  # Redis is there
    rpm, seconds, key = 600, 60, f"race-{uuid.uuid4().hex}"
    start_at = time.time() + 3
    env = {**os.environ, "REDIS_URL": REDIS_URL}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests/scripts/scheduler_race.py"),
                str(rpm),
                key,
                repr(start_at),
                str(seconds),
                "3",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=seconds + 60)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    grants = sorted(
        (float(stamp), who) for out in outputs for stamp, who in map(str.split, out.splitlines())
    )
    times = [stamp for stamp, _ in grants]
    # Busy all along: close to the rate (60/min spread evenly, 5% headroom).
    assert len(times) >= rpm / 60 * seconds * 0.8, len(times)
    per_second = rpm / 60
    for i, start in enumerate(times):
        window = [t for t in times[i : i + 20] if t < start + 1.0]
        assert len(window) <= per_second, (start, window)
    # Both processes, and each person in them, were served.
    people = {who for _, who in grants}
    assert len(people) == 6


async def test_requests_lost_with_an_emptied_redis_join_again_in_every_process(make):
    """Redis restarts empty while two processes have requests waiting: each process finds
    its own requests gone and queues them again; every one is served."""
    import redis

    key, log = uuid.uuid4().hex, Log()
    first, second = make("redis", 600), make("redis", 600)
    await first.pause(key, 1.0)
    tasks = [
        asyncio.create_task(log.take(first, key, "a1", who="alice")),
        asyncio.create_task(log.take(first, key, "a2", who="alice")),
        asyncio.create_task(log.take(second, key, "b1", who="bob")),
        asyncio.create_task(log.take(second, key, "b2", who="bob")),
    ]
    await asyncio.sleep(0.3)  # all four are queued
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(*client.keys(f"sched:{key}*"))  # the queue is gone, pause included
    await asyncio.wait_for(asyncio.gather(*tasks), 15)
    assert sorted(log.order) == ["a1", "a2", "b1", "b2"]


@pytest.mark.parametrize("kind", QUEUES)
async def test_joining_twice_queues_a_request_once(kind, make):
    scheduler, key, log = make(kind, 600), uuid.uuid4().hex, Log()
    await scheduler.pause(key, 0.5)
    twice = asyncio.create_task(log.take(scheduler, key, "twice", who="a"))
    await asyncio.sleep(0.1)
    (rid,) = scheduler._dispatcher(key).waiters
    await scheduler.queue.join(key, rid, "interactive", "a", scheduler.owner)  # again
    other = asyncio.create_task(log.take(scheduler, key, "other", who="b"))
    await asyncio.wait_for(asyncio.gather(twice, other), 10)
    # And the queue goes on working after it: no copy of it is left to trip on.
    await asyncio.wait_for(log.take(scheduler, key, "after", who="c"), 10)
    assert log.order == ["twice", "other", "after"]


async def test_an_entry_without_its_record_is_dropped_not_served(make):
    import redis

    scheduler, key, log = make("redis", 600), uuid.uuid4().hex, Log()
    client = redis.Redis.from_url(REDIS_URL)
    # What a crash between two steps could leave: a queued id with no record.
    client.rpush(f"sched:{key}:q:interactive:ghost", "ghost-rid")
    client.rpush(f"sched:{key}:turns:interactive", "ghost")
    await asyncio.wait_for(log.take(scheduler, key, "real", who="a"), 10)
    await asyncio.wait_for(log.take(scheduler, key, "next", who="a"), 10)
    assert log.order == ["real", "next"]
    assert not client.exists(f"sched:{key}:q:interactive:ghost")


async def test_a_process_taken_for_gone_queues_its_requests_again(make, settings):
    """A process whose loop was stuck past the lease is taken for gone and its request
    dropped; when it runs again, the request joins again and is served."""
    settings.SCHEDULER_LEASE_SECONDS = 1
    key, log = uuid.uuid4().hex, Log()
    alive, stuck = make("redis", 600), make("redis", 600)
    await alive.pause(key, 2.0)
    late = asyncio.create_task(log.take(stuck, key, "late", who="a"))
    await asyncio.sleep(0.2)
    dispatcher = stuck._dispatchers[asyncio.get_running_loop()][key]
    assert dispatcher.task is not None
    dispatcher.task.cancel()  # stuck: it says nothing for a while
    await asyncio.wait_for(log.take(alive, key, "living", who="b"), 10)
    assert log.order == ["living"]  # the stuck one's request was skipped
    dispatcher.task = asyncio.create_task(stuck._dispatch(key, dispatcher))  # it runs again
    await asyncio.wait_for(late, 10)
    assert log.order == ["living", "late"]
