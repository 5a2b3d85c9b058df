"""The app's settings for the benchmarks: chatsite.settings as they are, but for one thing.

channels-redis gives each process one Redis connection pool, which redis-py 8 caps at 100
connections and which fails ("Too many connections") instead of waiting when a burst of
sockets opens or hundreds of batches are sent at once; and its reads time out after 5 s,
as long as the layer's blocking receive waits. Until chatsite/settings.py sets both
(BENCH_LAYER_POOL says how large a pool; 0 leaves the settings as they are), the
benchmarks set them here. BENCH_SWITCH_INTERVAL and BENCH_LOOP_LAG_FILE are for profiling.
"""

import os

from chatsite.settings import *  # noqa: F403
from chatsite.settings import CHANNEL_LAYERS, REDIS_URL

_pool = int(os.environ.get("BENCH_LAYER_POOL", "0"))
if REDIS_URL and _pool:
    CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [
        # redis-py 8 also times a read out after 5 s, exactly as long as channels-redis's
        # BZPOPMIN blocks: a busy event loop then loses the race and the socket's consumer
        # dies with "Timeout reading from 127.0.0.1:6379".
        {"address": REDIS_URL, "max_connections": _pool, "socket_timeout": 30}
    ]

_switch = float(os.environ.get("BENCH_SWITCH_INTERVAL", "0"))
if _switch:
    import sys

    sys.setswitchinterval(_switch)

_lag_file = os.environ.get("BENCH_LOOP_LAG_FILE", "")
if _lag_file:
    # Event-loop lag, for profiling: a thread asks the loop to run a callback every 10 ms
    # and writes, each second, how long the callbacks waited (p50, p99, max in ms).
    import asyncio
    import threading
    import time

    _run_forever = asyncio.BaseEventLoop.run_forever

    def _watch(loop: asyncio.AbstractEventLoop) -> None:
        waits: list[float] = []
        second = time.time()
        with open(f"{_lag_file}.{os.getpid()}", "a") as out:
            while not loop.is_closed():
                asked = time.perf_counter()
                loop.call_soon_threadsafe(lambda a=asked: waits.append(time.perf_counter() - a))
                time.sleep(0.01)
                if time.time() - second >= 1 and waits:
                    ranked = sorted(waits)
                    p50, p99 = ranked[len(ranked) // 2], ranked[int(len(ranked) * 0.99)]
                    top = ranked[-1]
                    now = time.time()
                    out.write(f"{now:.0f} {p50 * 1e3:.1f} {p99 * 1e3:.1f} {top * 1e3:.1f}\n")
                    out.flush()
                    waits.clear()
                    second = time.time()

    def _run_forever_watched(self: asyncio.BaseEventLoop) -> None:
        threading.Thread(target=_watch, args=(self,), daemon=True).start()
        _run_forever(self)

    asyncio.BaseEventLoop.run_forever = _run_forever_watched  # type: ignore[method-assign]

if os.environ.get("BENCH_NO_REDIS"):
    # For bisecting only: one process, in-memory channel layer, replay log and limiter.
    REDIS_URL = ""
    CHANNEL_LAYER_SHARED = False
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    SILENCED_SYSTEM_CHECKS = ["conversations.E001"]

if os.environ.get("BENCH_MEMORY_LAYER"):
    # For bisecting only: the replay log and limiter in Redis, the channel layer in memory.
    CHANNEL_LAYER_SHARED = False
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    SILENCED_SYSTEM_CHECKS = ["conversations.E001"]

_gc = os.environ.get("BENCH_GC", "")
if _gc:
    # Garbage-collector experiments: "off" (none at all), or "freeze" (what exists after
    # start-up is never scanned again) with gen-0 threshold "freeze:50000".
    import gc

    if _gc == "off":
        gc.disable()
    elif _gc.startswith("freeze"):
        _threshold = int(_gc.partition(":")[2] or 0)
        if _threshold:
            gc.set_threshold(_threshold, 10, 10)
        import threading

        threading.Timer(3.0, gc.freeze).start()  # after the app has loaded
