"""Real servers: two processes on PostgreSQL and Redis sharing one stream, and a client
that stops reading for a while."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

from llm.simulator.replies import reply_text

from .browser import SIMULATED_CLAUDE, served
from .conftest import send_frame
from .streams import StreamCopy, shown
from .test_process_death import sign_up


def connect(url: str, session: str, **options: Any):  # type: ignore[no-untyped-def]
    return websockets.connect(
        url.replace("http", "ws", 1) + "/ws/chat/",
        origin=url,
        additional_headers={"Cookie": f"sessionid={session}"},
        **options,
    )


async def started(socket) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    """Read until a new turn is announced: its conversation and reply ids."""
    conversation = ""
    while True:
        frame = await asyncio.wait_for(socket.recv(), 10)
        if 'data-conversation="' in frame:
            conversation = frame.split('data-conversation="')[1].split('"')[0]
        if "beforeend:#messages" in frame:
            reply = int(frame.split('name="reply" value="')[1].split('"')[0])
            return conversation, reply


async def follow(socket, copy: StreamCopy, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while copy.active:
            after = copy.apply(await socket.recv())
            if after is not None:
                await socket.send(
                    json.dumps({"type": "resume", "reply": copy.reply_id, "after": after})
                )


def test_a_socket_on_one_process_streams_a_generation_running_in_another(
    tmp_path, postgres_url, redis_url
):
    env = {
        **SIMULATED_CLAUDE,
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "SIMULATOR_LATENCY_MS": "15",
    }
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with served(tmp_path / "a", **env) as a, served(tmp_path / "b", **env) as b:
        session = sign_up(a.url)  # the session is in the shared database: B knows it too

        async def scenario() -> None:
            prompt = "Across two processes [sim:tokens=120]"
            async with connect(b.url, session) as sender, connect(a.url, session) as watcher:
                await sender.send(send_frame(prompt, "x1"))
                conversation, reply = await started(sender)
                # The watcher on A arrives late: it resumes from the start, from the replay
                # log B keeps in Redis, then follows live through the channel layer.
                await watcher.send(
                    json.dumps(
                        {"type": "subscribe", "conversation": conversation, "resume": {reply: 0}}
                    )
                )
                mine, theirs = StreamCopy(reply), StreamCopy(reply)
                await asyncio.gather(follow(sender, mine), follow(watcher, theirs))
                assert theirs.status == mine.status == "complete"
                assert theirs.html == mine.html == shown(reply_text(prompt, tokens=120))

                # Stop pressed on A stops the generation running on B.
                await sender.send(
                    send_frame("Now a very long one [sim:tokens=3000]", "x2", conversation)
                )
                _, long_reply = await started(sender)
                copy = StreamCopy(long_reply)
                while len(copy.applied) < 3:
                    copy.apply(await asyncio.wait_for(watcher.recv(), 10))
                await watcher.send(json.dumps({"type": "stop", "reply": long_reply}))
                await follow(watcher, copy, timeout=5)
                assert copy.status == "stopped"

        asyncio.run(scenario())


def test_a_client_that_reads_nothing_for_ten_seconds_still_gets_the_whole_reply(tmp_path):
    prompt = "A long answer for a slow reader [sim:tokens=300]"
    with served(tmp_path, **SIMULATED_CLAUDE, SIMULATOR_LATENCY_MS="10") as app:
        session = sign_up(app.url)

        async def scenario() -> StreamCopy:
            # A tiny receive queue: the client soon stops taking frames off the wire.
            async with connect(app.url, session, max_queue=2) as socket:
                await socket.send(send_frame(prompt, "slow"))
                _, reply = await started(socket)
                await asyncio.sleep(10)
                copy = StreamCopy(reply)
                await follow(socket, copy)
                return copy

        copy = asyncio.run(scenario())
    assert copy.status == "complete"
    assert copy.html == shown(reply_text(prompt, tokens=300))
    assert copy.applied == list(range(1, len(copy.applied) + 1))
