"""The chat websocket, driven through the real ASGI application."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from channels.db import database_sync_to_async

from conversations import dom
from conversations.models import Conversation, Message
from llm.simulator.replies import reply_text

from .conftest import communicator, receive_until
from .streams import BATCH


def send(text: str, *, conversation: str = "", client_id: str = "c1") -> str:
    return json.dumps(
        {
            "type": "send",
            "conversation": conversation,
            "message": text,
            "client_id": client_id,
            "HEADERS": {"HX-Request": "true"},
        }
    )


@database_sync_to_async
def only_conversation(user) -> Conversation:
    return Conversation.objects.get(owner=user)


@database_sync_to_async
def messages_of(conversation: Conversation) -> list[Message]:
    return list(conversation.messages.order_by("id"))


async def connected(cookie: str):
    comm = communicator(cookie)
    connected, _ = await comm.connect()
    assert connected
    return comm


async def test_a_new_chat_streams_its_reply_and_is_saved(alice, alice_cookie):
    prompt = "What is a budget? [sim:tokens=60]"
    comm = await connected(alice_cookie)
    await comm.send_to(text_data=send(prompt))
    frames = await receive_until(comm, 'message--assistant" data-status="complete"')
    await comm.disconnect()

    conversation = await only_conversation(alice)
    user_message, reply = await messages_of(conversation)
    expected = reply_text(prompt, tokens=60)
    # The page is told where it is now, then gets both messages, then the reply grows.
    assert f'data-url="/c/{conversation.pk}/"' in frames[0]
    assert dom.element_id(user_message.pk) in frames[1] and dom.element_id(reply.pk) in frames[1]
    batches = [f for f in frames if (batch := BATCH.match(f)) and batch["id"] == str(reply.pk)]
    assert len(batches) >= 2, "the reply should arrive in several batches"
    seqs = [int(f.split('data-seq="')[1].split('"')[0]) for f in batches]
    assert seqs == list(range(1, len(batches) + 1))
    assert (user_message.role, user_message.content) == ("user", prompt)
    assert (reply.status, reply.content, reply.model) == ("complete", expected, "claude-4-6")
    assert reply.output_tokens == 60 and reply.input_tokens > 0
    assert "<h2>" in reply.content_html and "<h2>" in frames[-1]
    assert conversation.title == prompt


async def test_a_second_message_goes_to_the_same_conversation_with_history(alice, alice_cookie):
    comm = await connected(alice_cookie)
    await comm.send_to(text_data=send("First [sim:tokens=5]", client_id="a1"))
    await receive_until(comm, 'message--assistant" data-status="complete"')
    conversation = await only_conversation(alice)
    await comm.send_to(
        text_data=send("Second [sim:tokens=5]", conversation=str(conversation.pk), client_id="a2")
    )
    await receive_until(comm, 'message--assistant" data-status="complete"')
    await comm.disconnect()
    messages = await messages_of(conversation)
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    # The second request carried the whole conversation: more input tokens.
    assert messages[3].input_tokens > messages[1].input_tokens


async def test_a_double_send_makes_one_turn(alice, alice_cookie):
    comm = await connected(alice_cookie)
    await comm.send_to(text_data=send("Once [sim:tokens=30] [sim:latency=20]", client_id="same"))
    await receive_until(comm, "beforeend:#messages")
    conversation = await only_conversation(alice)
    for _ in range(2):
        await comm.send_to(
            text_data=send(
                "Once [sim:tokens=30] [sim:latency=20]",
                conversation=str(conversation.pk),
                client_id="same",
            )
        )
    frames = await receive_until(comm, 'message--assistant" data-status="complete"')
    await comm.disconnect()
    assert not any("beforeend:#messages" in f for f in frames)
    assert len(await messages_of(conversation)) == 2


async def test_a_second_tab_watching_sees_the_same_reply(alice, alice_cookie):
    first = await connected(alice_cookie)
    await first.send_to(text_data=send("Hello [sim:tokens=5]", client_id="x1"))
    await receive_until(first, 'message--assistant" data-status="complete"')
    conversation = await only_conversation(alice)
    second = await connected(alice_cookie)
    await second.send_to(
        text_data=json.dumps({"type": "subscribe", "conversation": str(conversation.pk)})
    )
    await asyncio.sleep(0.05)
    await first.send_to(
        text_data=send("Again [sim:tokens=40]", conversation=str(conversation.pk), client_id="x2")
    )
    mine = await receive_until(first, 'message--assistant" data-status="complete"')
    theirs = await receive_until(second, 'message--assistant" data-status="complete"')
    await first.disconnect()
    await second.disconnect()
    assert "".join(f for f in theirs if "beforeend:#m-" in f) == "".join(
        f for f in mine if "beforeend:#m-" in f
    )


async def test_stop_ends_the_reply_and_keeps_its_text(alice, alice_cookie):
    comm = await connected(alice_cookie)
    await comm.send_to(text_data=send("Long one [sim:tokens=400] [sim:latency=20]"))
    frames = await receive_until(comm, 'data-seq="3"')
    reply_id = frames[1].split('name="reply" value="')[1].split('"')[0]
    await comm.send_to(text_data=json.dumps({"type": "stop", "reply": reply_id}))
    frames = await receive_until(comm, 'data-status="stopped"', timeout=2)
    await comm.disconnect()
    reply = (await messages_of(await only_conversation(alice)))[1]
    assert reply.status == "stopped"
    assert 0 < reply.output_tokens < 400
    assert reply.content and reply_text(
        "Long one [sim:tokens=400] [sim:latency=20]", tokens=400
    ).startswith(reply.content)
    assert "You stopped this reply." in frames[-1]


async def test_an_upstream_error_is_told_in_plain_words(alice, alice_cookie):
    comm = await connected(alice_cookie)
    await comm.send_to(text_data=send("Hi [sim:error=500]"))
    frames = await receive_until(comm, 'data-status="failed"')
    await comm.disconnect()
    final = frames[-1]
    assert "The model service had a hiccup" in final
    # A status as a number of its own (the frame's figures, e.g. a budget left of
    # 5000000 micro-dollars, may contain the digits).
    assert not re.search(r"\b500\b", final) and "api_error" not in final and "{" not in final
    reply = (await messages_of(await only_conversation(alice)))[1]
    assert reply.error_kind == "server"
    assert "status=500" in reply.error_detail and "request_id=req_" in reply.error_detail


async def test_a_send_while_a_reply_is_streaming_is_refused_and_the_text_kept(alice, alice_cookie):
    comm = await connected(alice_cookie)
    await comm.send_to(text_data=send("Long [sim:tokens=200] [sim:latency=10]", client_id="l1"))
    await receive_until(comm, 'data-seq="1"')
    conversation = await only_conversation(alice)
    await comm.send_to(
        text_data=send("Impatient", conversation=str(conversation.pk), client_id="l2")
    )
    frames = await receive_until(comm, "Wait for the current reply")
    assert "Impatient</textarea>" in frames[-1]
    await receive_until(comm, 'message--assistant" data-status="complete"')
    await comm.disconnect()
    assert len(await messages_of(conversation)) == 2


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{not json", "could not be read"),
        ("[1, 2]", "could not be read"),
        ('{"type": "dance"}', "Unknown request"),
        ('{"type": "send", "message": "   ", "client_id": "e1"}', "Type a message first"),
        (
            '{"type": "send", "message": "hi", "client_id": "no spaces allowed"}',
            "could not be sent",
        ),
    ],
)
async def test_bad_input_gets_a_clear_error_and_the_socket_stays_usable(
    alice, alice_cookie, raw, expected
):
    comm = await connected(alice_cookie)
    await comm.send_to(text_data=raw)
    frame = await comm.receive_from()
    assert expected in frame
    await comm.send_to(text_data=send("Still here? [sim:tokens=3]", client_id="ok1"))
    await receive_until(comm, 'message--assistant" data-status="complete"')
    await comm.disconnect()


async def test_binary_frames_are_refused_clearly(alice, alice_cookie):
    comm = await connected(alice_cookie)
    await comm.send_to(bytes_data=b"\x00\x01")
    assert "Messages must be text" in await comm.receive_from()
    await comm.disconnect()


async def test_a_logged_out_handshake_is_refused():
    comm = communicator(None)
    connected, _ = await comm.connect()
    assert not connected


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "null",
        None,
        "http://127.0.0.1:9999",  # another program's page on the same machine
        "http://localhost:8000",  # an allowed host, but not the page's own origin
        "file:///home/alice/evil.html",
        "ws://127.0.0.1:8000",
    ],
)
async def test_a_handshake_from_another_origin_is_refused(alice_cookie, origin):
    comm = communicator(alice_cookie, origin=origin)
    connected, _ = await comm.connect()
    assert not connected


@pytest.mark.parametrize(
    ("origin", "host"),
    [("http://127.0.0.1:8000", "127.0.0.1:8000"), ("http://localhost:8000", "LOCALHOST:8000")],
)
async def test_a_handshake_from_the_app_origin_is_accepted(alice_cookie, origin, host):
    comm = communicator(alice_cookie, origin=origin, host=host)
    connected, _ = await comm.connect()
    assert connected
    await comm.disconnect()


async def test_a_trusted_origin_is_accepted_whatever_host_the_proxy_sends(alice_cookie, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://127.0.0.1"]
    comm = communicator(alice_cookie, origin="https://127.0.0.1", host="app:8000")
    connected, _ = await comm.connect()
    assert connected
    await comm.disconnect()


async def test_one_person_cannot_run_more_replies_at_once_than_allowed(
    alice, alice_cookie, settings
):
    settings.USER_MAX_ACTIVE_REPLIES = 2
    comm = await connected(alice_cookie)
    for n in (1, 2):
        await comm.send_to(
            text_data=send(f"Long {n} [sim:tokens=300] [sim:latency=10]", client_id=f"f{n}")
        )
        await receive_until(comm, "beforeend:#messages")
    await comm.send_to(text_data=send("A third", client_id="f3"))
    frames = await receive_until(comm, "replies being written")
    assert "You already have 2 replies being written" in frames[-1]
    assert "A third</textarea>" in frames[-1]
    await comm.disconnect()
    from conversations import generation

    running = list(generation._running.values())
    for reply in running:
        reply.stop()
    await asyncio.gather(*(reply.task for reply in running))
    messages = await database_sync_to_async(
        lambda: Message.objects.filter(conversation__owner=alice, role="user").count()
    )()
    assert messages == 2
