"""The hot path's Redis commands, sent together: one pipeline at a time per event loop.

Every batch of every reply being written makes a few Redis commands (the replay log, the
cross-process watchers). Sent one round trip each, at hundreds of streams they cost more
than the rest of the per-token path, and a burst of them takes more connections than the
pool has ("Too many connections"). Here they queue while the previous pipeline is on the
wire and go out together in the next one, on one connection, in the order they were
submitted: a command submitted after another is executed after it.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from typing import Any

from chatsite.redis import client as redis_client

log = logging.getLogger(__name__)

Command = Sequence[Any]  # ("RPUSH", key, value)


class Pipeliner:
    """Queues commands and sends them in pipelines, one in flight at a time."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._queue: list[tuple[Sequence[Command], asyncio.Future[list[Any]]]] = []
        self._draining = False
        self._task: asyncio.Task[None] | None = None  # kept: a bare task may be collected

    def submit(self, *commands: Command) -> asyncio.Future[list[Any]]:
        """Queue `commands` (run in this order, after everything submitted before); a
        future of their results. Does not wait: the order is fixed when this returns."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._queue.append((commands, future))
        if not self._draining:
            self._draining = True
            self._task = loop.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                pipe = redis_client(self._url).pipeline(transaction=False)
                for commands, _future in batch:
                    for command in commands:
                        pipe.execute_command(*command)
                try:
                    results = await pipe.execute(raise_on_error=False)
                except Exception as exc:
                    for _commands, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                at = 0
                for commands, future in batch:
                    if not future.done():
                        future.set_result(results[at : at + len(commands)])
                    at += len(commands)
        finally:
            self._draining = False


_pipeliners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Pipeliner]] = (
    weakref.WeakKeyDictionary()
)


def pipeliner(url: str) -> Pipeliner:
    """The pipeliner for `url` on the running loop (its connection belongs to the loop)."""
    per_loop = _pipeliners.setdefault(asyncio.get_running_loop(), {})
    if url not in per_loop:
        per_loop[url] = Pipeliner(url)
    return per_loop[url]


async def run(url: str, *commands: Command) -> list[Any]:
    """Run `commands` in the next pipeline; their results. An error reply raises."""
    results = await pipeliner(url).submit(*commands)
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results
