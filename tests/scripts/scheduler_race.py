"""Run by test_scheduler in a process of its own: for SECONDS, keep PEOPLE requests waiting
for slots of the shared (Redis) scheduler, and print the wall-clock time each was granted."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

import django

django.setup()

from billing.scheduler import RedisQueue, Scheduler  # noqa: E402


async def main(rpm: int, key: str, start_at: float, seconds: float, people: int) -> None:
    scheduler = Scheduler(queue=RedisQueue(os.environ["REDIS_URL"]), rpm=rpm)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    stop_at = start_at + seconds

    async def person(name: str) -> None:
        while time.time() < stop_at:
            await scheduler.acquire(key, who=name)
            print(repr(time.time()), name, flush=True)

    await asyncio.gather(*(person(f"{os.getpid()}-{n}") for n in range(people)))


if __name__ == "__main__":
    rpm, key, start, seconds, people = sys.argv[1:6]
    asyncio.run(main(int(rpm), key, float(start), float(seconds), int(people)))
