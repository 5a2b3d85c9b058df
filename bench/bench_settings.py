"""The app's settings for the benchmarks: chatsite.settings as they are, but for one thing.

channels-redis gives each process one Redis connection pool, which redis-py 8 caps at 100
connections and which fails ("Too many connections") instead of waiting when a burst of
sockets opens or hundreds of batches are sent at once. Until chatsite/settings.py sets a
larger pool (BENCH_LAYER_POOL says how large), the benchmarks set it here.
"""

import os

from chatsite.settings import *  # noqa: F403
from chatsite.settings import CHANNEL_LAYERS, REDIS_URL

_pool = int(os.environ.get("BENCH_LAYER_POOL", "0"))
if REDIS_URL and _pool:
    CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [
        {"address": REDIS_URL, "max_connections": _pool}
    ]
