"""Turns answered by the built-in local model, through the websocket."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async

from billing.models import CatalogModel
from conversations.models import Message

from .conftest import communicator, receive_until, send_frame

LOCAL = "smollm2-135m"


@pytest.fixture(autouse=True)
def short_replies(db: None) -> None:
    """Keep local replies short: these tests are about queueing and stopping, and a 135M
    model asked for a story may otherwise write 2,048 tokens."""
    CatalogModel.objects.filter(slug="smollm2-135m").update(max_output_tokens=96)


@database_sync_to_async
def replies_of(user) -> list[Message]:
    return list(Message.objects.filter(conversation__owner=user, role="assistant"))


async def test_a_second_turn_waits_its_turn_and_the_page_says_so(
    alice_cookie, bob_cookie, alice, bob
):
    first, second = communicator(alice_cookie), communicator(bob_cookie)
    await first.connect()
    await second.connect()
    await first.send_to(
        text_data=send_frame("Tell me a long story about a cat.", "q1", model=LOCAL)
    )
    await receive_until(first, 'data-seq="1"', timeout=30)
    await second.send_to(text_data=send_frame("Say hello.", "q2", model=LOCAL))
    frames = await receive_until(second, "Queued: 1 request ahead of yours", timeout=30)
    assert 'id="m-' in frames[-1] and "-status" in frames[-1]
    await receive_until(first, 'message--assistant" data-status=', timeout=120)
    await receive_until(second, 'message--assistant" data-status=', timeout=120)
    await first.disconnect()
    await second.disconnect()
    (mine,), (theirs,) = await replies_of(alice), await replies_of(bob)
    assert mine.status in {"complete", "cut_off"} and theirs.status in {"complete", "cut_off"}
    assert mine.model_name == "SmolLM2 135M (local)"
    assert mine.input_tokens > 0 and mine.output_tokens > 0


async def test_stop_ends_a_local_generation_within_a_second(alice_cookie, alice):
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(
        text_data=send_frame("Write a very long essay about the ocean.", "s1", model=LOCAL)
    )
    frames = await receive_until(comm, 'data-seq="2"', timeout=30)
    reply_id = frames[1].split('name="reply" value="')[1].split('"')[0]
    await comm.send_to(text_data=json.dumps({"type": "stop", "reply": reply_id}))
    await receive_until(comm, 'message--assistant" data-status="stopped"', timeout=1)
    await comm.disconnect()
    (reply,) = await replies_of(alice)
    assert reply.status == "stopped" and reply.content
    assert 0 < reply.output_tokens < 96
