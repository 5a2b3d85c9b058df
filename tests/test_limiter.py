"""The upstream's rate kept by the scheduler (billing/scheduler.py, tested on its own in
test_scheduler.py): many turns at once never trip the upstream's rate limit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model

from conversations import generation, services, turns
from conversations.models import Message
from llm.simulator import SimulatorConfig, start_in_thread

from .conftest import TEST_KEY

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


@database_sync_to_async
def start_turns(users: int, per_user: int):
    User = get_user_model()
    started = []
    for u in range(users):
        person = User.objects.create_user(f"user{u}")
        for c in range(per_user):
            conversation = services.conversation_create(user=person, model="claude-4-6")
            started.append(
                turns.turn_start(
                    user=person,
                    conversation=conversation,
                    text=f"Hi {u}/{c} [sim:tokens=3]",
                    client_id=f"t{u}x{c}",
                )
            )
    return started


@pytest.fixture
def strict_simulator():
    """The simulator in a process of its own, like the real upstream: 600 requests a
    minute (the model card's 60, on a clock ten times faster), a bucket of two."""
    from .browser import free_port, wait_for_port

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "simulator",
            "--port",
            str(port),
            "--rpm",
            "600",
            "--burst",
            "2",
            "--latency-ms",
            "1",
            "--api-key",
            TEST_KEY,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_200_turns_from_20_users_at_once_trip_no_rate_limit(settings, strict_simulator):
    import httpx

    # A faster clock shrinks the slack between slots too (5% of 1 s is 50 ms; of 100 ms,
    # 5 ms) while the jitter of a test process does not: so the app is set a little lower.
    settings.ANTHROPIC_BASE_URL = strict_simulator
    settings.UPSTREAM_RPM = 550
    settings.USER_MAX_ACTIVE_REPLIES = 10  # each of the 20 users has 10 turns at once
    started = await start_turns(20, 10)
    launched = [await generation.launch(turn) for turn in started]
    await asyncio.wait_for(asyncio.gather(*(g.task for g in launched)), timeout=180)
    statuses = await database_sync_to_async(
        lambda: sorted(
            set(Message.objects.filter(role="assistant").values_list("status", flat=True))
        )
    )()
    assert statuses == ["complete"]
    async with httpx.AsyncClient() as client:
        stats = (await client.get(strict_simulator + "/stats")).json()
    assert stats["requests"] == 200
    assert stats["rate_limited"] == 0


async def test_without_the_limiter_the_same_burst_is_rate_limited(settings):
    """The control: the simulator really does refuse bursts."""
    import httpx

    sim = start_in_thread(SimulatorConfig(latency_ms=1, rpm=3000, burst=2, api_key=TEST_KEY))
    try:
        async with httpx.AsyncClient(base_url=sim.url) as client:
            body = {
                "model": "claude-4-6",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi [sim:tokens=1]"}],
            }
            codes = await asyncio.gather(
                *(
                    client.post("/v1/messages", json=body, headers={"x-api-key": TEST_KEY})
                    for _ in range(20)
                )
            )
        assert sum(r.status_code == 429 for r in codes) > 5
    finally:
        sim.stop()
