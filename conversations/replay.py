"""The replay log: the recent batches of each reply being written, by sequence number, as
the frames that were sent (each batch's changes depend on the text before it).

A page that reloads or reconnects mid-stream has the text up to some batch (from the last
checkpoint, or from the batches it saw); the log fills the gap from there, so the reply
continues with no hole and no repeat. It holds the last `KEEP` batches of each reply
(the checkpoint, written about once a second, is never further back than that), in this
process or, when several processes serve the same users, in Redis.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from django.conf import settings

from . import redis_pipe

KEEP = 512  # batches: at 20 a second, 25 seconds of a reply
EXPIRY_SECONDS = 3600  # a log whose generation vanished without ending it
TRIM_EVERY = 32  # batches between trims of a Redis log


class ReplayLog(Protocol):
    async def reset(self, reply_id: int) -> None: ...
    async def append(self, reply_id: int, seq: int, frame: str) -> None: ...
    async def since(self, reply_id: int, after: int) -> list[tuple[int, str]] | None:
        """The batches after `after`, in order; None if the log does not reach back
        that far."""
        ...

    async def discard(self, reply_id: int) -> None: ...


def _covering(entries: list[tuple[int, str]], after: int) -> list[tuple[int, str]] | None:
    if not entries:
        return [] if after == 0 else None
    if after > entries[-1][0]:
        return None  # the page is ahead of this log: a newer generation (a Continue) began
    wanted = [(seq, text) for seq, text in entries if seq > after]
    first = wanted[0][0] if wanted else entries[-1][0] + 1
    if first > after + 1:
        return None
    return wanted


class MemoryLog:
    def __init__(self) -> None:
        self._logs: dict[int, deque[tuple[int, str]]] = {}

    async def reset(self, reply_id: int) -> None:
        self._logs[reply_id] = deque(maxlen=KEEP)

    async def append(self, reply_id: int, seq: int, frame: str) -> None:
        self._logs.setdefault(reply_id, deque(maxlen=KEEP)).append((seq, frame))

    async def since(self, reply_id: int, after: int) -> list[tuple[int, str]] | None:
        return _covering(list(self._logs.get(reply_id, ())), after)

    async def discard(self, reply_id: int) -> None:
        self._logs.pop(reply_id, None)


class RedisLog:
    """One Redis list per reply: `seq:frame` entries, trimmed to the last KEEP. Commands go
    through the per-loop pipeline (redis_pipe.py): the appends of every reply being written
    share round trips, and a read comes after every write submitted before it."""

    def __init__(self, url: str) -> None:
        self.url = url

    @staticmethod
    def _key(reply_id: int) -> str:
        return f"replay:{reply_id}"

    def reset_commands(self, reply_id: int) -> list[redis_pipe.Command]:
        return [("DEL", self._key(reply_id))]

    async def reset(self, reply_id: int) -> None:
        await redis_pipe.run(self.url, *self.reset_commands(reply_id))

    def append_commands(self, reply_id: int, seq: int, frame: str) -> list[redis_pipe.Command]:
        """The commands that log a batch, for a caller that sends them with its own. The
        list is trimmed (and its expiry renewed) with the first batch and every TRIM_EVERY
        after: one command for most batches, and never more than KEEP + TRIM_EVERY kept."""
        key = self._key(reply_id)
        commands: list[redis_pipe.Command] = [("RPUSH", key, f"{seq}:{frame}")]
        if seq % TRIM_EVERY == 1:
            commands += [("LTRIM", key, -KEEP, -1), ("EXPIRE", key, EXPIRY_SECONDS)]
        return commands

    async def append(self, reply_id: int, seq: int, frame: str) -> None:
        await redis_pipe.run(self.url, *self.append_commands(reply_id, seq, frame))

    async def since(self, reply_id: int, after: int) -> list[tuple[int, str]] | None:
        [raw] = await redis_pipe.run(self.url, ("LRANGE", self._key(reply_id), 0, -1))
        entries = []
        for item in raw:
            seq, _, frame = item.decode().partition(":")
            entries.append((int(seq), frame))
        return _covering(entries, after)

    async def discard(self, reply_id: int) -> None:
        await redis_pipe.run(self.url, ("DEL", self._key(reply_id)))


_log: MemoryLog | RedisLog | None = None
_log_url: str | None = None


def replay_log() -> MemoryLog | RedisLog:
    global _log, _log_url
    if _log is None or _log_url != settings.REDIS_URL:
        _log = RedisLog(settings.REDIS_URL) if settings.REDIS_URL else MemoryLog()
        _log_url = settings.REDIS_URL
    return _log
