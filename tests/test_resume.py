"""Replies that survive: reconnect mid-stream, fall behind, close the tab, stop, resend."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from channels.db import database_sync_to_async
from django.test import Client
from django.utils import timezone

from billing.models import Reservation, UsageRecord
from conversations import dom, endings, frames, replay, services, turns
from conversations.models import Conversation, Message
from conversations.streaming_render import StreamRenderer
from llm.simulator.replies import reply_text

from .conftest import communicator, receive_until, send_frame
from .streams import StreamCopy, shown

DONE = 'message--assistant" data-status='


@database_sync_to_async
def the_reply(user) -> Message:  # type: ignore[no-untyped-def]
    return Message.objects.filter(conversation__owner=user, role="assistant").latest("id")


async def follow(comm, copy: StreamCopy, *, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    """Read frames into `copy` until its reply ends, resuming on every gap."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while copy.active:
        frame = await comm.receive_from(timeout=max(0.1, deadline - loop.time()))
        after = copy.apply(frame)
        if after is not None:
            await comm.send_to(
                text_data=json.dumps({"type": "resume", "reply": copy.reply_id, "after": after})
            )


async def start_and_drop(cookie: str, prompt: str, *, batches: int) -> tuple[StreamCopy, str]:
    """Send `prompt`, read `batches` batches, then lose the connection."""
    comm = communicator(cookie)
    await comm.connect()
    await comm.send_to(text_data=send_frame(prompt, "r1"))
    frames = await receive_until(comm, "beforeend:#messages")
    reply_id = int(frames[-1].split('name="reply" value="')[1].split('"')[0])
    conversation = frames[0].split('data-conversation="')[1].split('"')[0]
    copy = StreamCopy(reply_id)
    while len(copy.applied) < batches:
        copy.apply(await comm.receive_from(timeout=5))
    await comm.disconnect()
    return copy, conversation


async def test_a_reconnect_mid_stream_continues_with_no_gap_and_no_repeat(alice, alice_cookie):
    prompt = "Tell me everything [sim:tokens=150] [sim:latency=10]"
    copy, conversation = await start_and_drop(alice_cookie, prompt, batches=5)
    await asyncio.sleep(0.3)  # batches go by while nobody is connected
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(
        text_data=json.dumps(
            {"type": "subscribe", "conversation": conversation, "resume": {copy.reply_id: 5}}
        )
    )
    await follow(comm, copy)
    await comm.disconnect()
    assert copy.status == "complete"
    assert copy.html == shown(reply_text(prompt, tokens=150))
    assert copy.applied == list(range(1, len(copy.applied) + 1))  # every batch, once, in order


async def test_a_page_too_far_behind_gets_the_checkpoint_then_the_rest(
    alice, alice_cookie, settings, monkeypatch
):
    monkeypatch.setattr(replay, "KEEP", 6)  # the log keeps only the last six batches
    settings.STREAM_CHECKPOINT_INTERVAL_MS = 60
    prompt = "Tell me everything [sim:tokens=200] [sim:latency=8]"
    copy, conversation = await start_and_drop(alice_cookie, prompt, batches=2)
    await asyncio.sleep(0.6)
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(
        text_data=json.dumps(
            {"type": "subscribe", "conversation": conversation, "resume": {copy.reply_id: 2}}
        )
    )
    await follow(comm, copy)
    await comm.disconnect()
    assert any(seq < 0 for seq in copy.applied), "expected the checkpoint, not batches"
    assert copy.html == shown(reply_text(prompt, tokens=200))


async def test_a_page_opened_mid_stream_shows_the_checkpoint_and_continues(alice, alice_cookie):
    prompt = "Tell me everything [sim:tokens=200] [sim:latency=10]"
    _copy, conversation = await start_and_drop(alice_cookie, prompt, batches=1)
    await asyncio.sleep(1.3)  # past a checkpoint
    reply = await the_reply(alice)
    assert reply.status == "streaming" and reply.stream_seq > 0 and reply.content
    page = await database_sync_to_async(_page)(alice, conversation)
    assert f'id="{dom.element_id(reply.pk, "text")}" data-seq="{reply.stream_seq}"' in page
    # Formatted as the batches would have built it: the batches after it apply on top.
    assert frames.stream_parts(reply.pk, StreamRenderer(reply.content)) in page
    # The page has the checkpoint: it resumes from its number.
    copy = StreamCopy.of(reply.pk, seq=reply.stream_seq, text=reply.content)
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(
        text_data=json.dumps(
            {
                "type": "subscribe",
                "conversation": conversation,
                "resume": {reply.pk: reply.stream_seq},
            }
        )
    )
    await follow(comm, copy)
    await comm.disconnect()
    assert copy.html == shown(reply_text(prompt, tokens=200))


async def test_closing_the_tab_does_not_end_the_reply(alice, alice_cookie):
    prompt = "Answer while I am away [sim:tokens=60] [sim:latency=5]"
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(text_data=send_frame(prompt, "gone"))
    await receive_until(comm, "beforeend:#messages")
    await comm.disconnect()
    for _ in range(100):
        reply = await the_reply(alice)
        if not reply.is_active:
            break
        await asyncio.sleep(0.1)
    assert reply.status == "complete" and reply.content == reply_text(prompt, tokens=60)
    state = await database_sync_to_async(
        lambda: Reservation.objects.get(pk=reply.reservation_id).state
    )()
    assert state == "settled"


async def test_stop_takes_effect_within_a_second_and_bills_what_was_received(alice, alice_cookie):
    prompt = "Go on and on [sim:tokens=2000] [sim:latency=5]"
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(text_data=send_frame(prompt, "s1"))
    frames = await receive_until(comm, 'data-seq="10"')
    reply_id = int(frames[1].split('name="reply" value="')[1].split('"')[0])
    loop = asyncio.get_running_loop()
    pressed = loop.time()
    await comm.send_to(text_data=json.dumps({"type": "stop", "reply": reply_id}))
    await receive_until(comm, f'{DONE}"stopped"', timeout=5)
    took = loop.time() - pressed
    await comm.disconnect()
    assert took < 1.0, f"Stop took {took:.2f} s"
    reply = await the_reply(alice)
    record = await database_sync_to_async(UsageRecord.objects.get)(message_id=reply.pk)
    from llm.simulator.replies import count_tokens

    assert record.output_tokens == count_tokens(reply.content) < 2000
    assert record.charged_micros == record.input_tokens + 2 * record.output_tokens


async def test_a_triple_submit_makes_one_message_one_call_one_charge(
    alice, alice_cookie, simulator
):
    before = simulator.app.stats.requests
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(text_data=send_frame("Only once [sim:tokens=20] [sim:latency=5]", "same"))
    frames = await receive_until(comm, "beforeend:#messages")
    conversation = frames[0].split('data-conversation="')[1].split('"')[0]
    for _ in range(2):  # Enter pressed again, and a resend after a dropped connection
        await comm.send_to(
            text_data=send_frame("Only once [sim:tokens=20] [sim:latency=5]", "same", conversation)
        )
    await receive_until(comm, f'{DONE}"complete"')
    await comm.disconnect()
    counts = await database_sync_to_async(
        lambda: (
            Message.objects.filter(role="user").count(),
            Message.objects.filter(role="assistant").count(),
            Reservation.objects.count(),
            UsageRecord.objects.count(),
        )
    )()
    assert counts == (1, 1, 1, 1)
    assert simulator.app.stats.requests - before == 1


async def test_an_interrupted_reply_offers_retry(alice, alice_cookie):
    conversation = await database_sync_to_async(services.conversation_create)(user=alice)
    turn = await database_sync_to_async(turns.turn_start)(
        user=alice, conversation=conversation, text="Hello", client_id="i1"
    )
    await database_sync_to_async(endings.reply_checkpoint)(
        reply_id=turn.reply.pk, content="Half an answ", seq=2
    )
    await database_sync_to_async(
        lambda: Message.objects.filter(pk=turn.reply.pk).update(
            updated_at=timezone.now() - timedelta(minutes=5)
        )
    )()
    assert await database_sync_to_async(endings.recover_stale_turns)() == 1
    page = await database_sync_to_async(_page)(alice, str(conversation.pk))
    assert "interrupted because the server restarted" in page
    assert 'name="type" value="retry"' in page and "Half an answ" in page
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(text_data=json.dumps({"type": "retry", "reply": turn.reply.pk}))
    await receive_until(comm, f'{DONE}"complete"')
    await comm.disconnect()


def _page(user, conversation: str) -> str:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    response = client.get(Conversation.objects.get(pk=conversation).get_absolute_url())
    assert response.status_code == 200
    return response.content.decode()


def test_a_page_ahead_of_the_log_gets_the_checkpoint():
    # A tab that missed a Continue knows batch 300 of the previous generation; the new
    # generation's log starts again at 1: the tab must be reset, not told it is up to date.
    assert replay._covering([(1, "a"), (2, "b")], 300) is None
    assert replay._covering([(1, "a"), (2, "b")], 2) == []
    assert replay._covering([(1, "a"), (2, "b")], 1) == [(2, "b")]
