"""Run by test_limiter in a process of its own: take N slots from the shared (Redis)
limiter and print the wall-clock time each was granted."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from billing.limiter import Limiter, RedisStore


async def main(count: int, rpm: int, key: str, start_at: float) -> None:
    limiter = Limiter(store=RedisStore(os.environ["REDIS_URL"]), rpm=rpm)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    for _ in range(count):
        await limiter.acquire(key)
        print(repr(time.time()), flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])))
