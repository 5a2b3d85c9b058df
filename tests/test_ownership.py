"""A user sees and acts on their own conversations only: over HTTP and the websocket."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser
from django.http import Http404
from django.test import Client

from conversations.models import Conversation, Message
from conversations.selectors import get_message_for_user

from .conftest import communicator, receive_until


@database_sync_to_async
def alices_conversation(alice) -> Conversation:
    conversation = Conversation.objects.create(owner=alice, model="claude-4-6", title="Secret")
    Message.objects.create(conversation=conversation, role="user", content="my secret plan")
    return conversation


@database_sync_to_async
def count_messages(conversation: Conversation) -> int:
    return conversation.messages.count()


def test_another_users_conversation_is_a_404(alice, bob):
    conversation = Conversation.objects.create(owner=alice, model="claude-4-6", title="Secret")
    client = Client()
    client.force_login(bob)
    response = client.get(conversation.get_absolute_url())
    assert response.status_code == 404
    assert b"Secret" not in response.content

    client.force_login(alice)
    assert client.get(conversation.get_absolute_url()).status_code == 200


def test_a_message_is_found_only_for_its_owner_and_in_its_role(alice, bob):
    """get_message_for_user, the one door to a message by id (the socket's Stop, Retry,
    Continue, Regenerate and Edit all go through it)."""
    conversation = Conversation.objects.create(owner=alice, model="claude-4-6")
    question = Message.objects.create(conversation=conversation, role="user", content="q")
    reply = Message.objects.create(conversation=conversation, role="assistant", content="a")
    found = get_message_for_user(alice, str(reply.pk), role="assistant")
    assert found == reply and found.conversation == conversation
    assert get_message_for_user(alice, question.pk, role="user") == question
    for user, message_id, role in [
        (bob, reply.pk, "assistant"),  # someone else's
        (alice, question.pk, "assistant"),  # the wrong role
        (alice, "1; DROP TABLE", "assistant"),  # not an id
        (alice, None, "assistant"),
        (alice, reply.pk + 1000, "assistant"),  # no such message
        (AnonymousUser(), reply.pk, "assistant"),
    ]:
        with pytest.raises(Http404):
            get_message_for_user(user, message_id, role=role)


def test_the_list_shows_only_my_conversations(alice, bob):
    Conversation.objects.create(owner=alice, model="claude-4-6", title="Alice's plans")
    Conversation.objects.create(owner=bob, model="claude-4-6", title="Bob's plans")
    client = Client()
    client.force_login(bob)
    page = client.get("/").content.decode()
    assert "Bob&#x27;s plans" in page and "Alice" not in page


def test_a_signed_out_visitor_is_sent_to_sign_in(alice):
    conversation = Conversation.objects.create(owner=alice, model="claude-4-6")
    response = Client().get(conversation.get_absolute_url())
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


async def test_bob_cannot_subscribe_to_alices_conversation(alice, alice_cookie, bob_cookie):
    conversation = await alices_conversation(alice)
    bob = communicator(bob_cookie)
    assert (await bob.connect())[0]
    await bob.send_to(
        text_data=json.dumps({"type": "subscribe", "conversation": str(conversation.pk)})
    )
    assert "That conversation was not found." in await bob.receive_from()

    # Alice chats there; bob's socket hears nothing of it.
    alice_socket = communicator(alice_cookie)
    assert (await alice_socket.connect())[0]
    await alice_socket.send_to(
        text_data=json.dumps(
            {
                "type": "send",
                "conversation": str(conversation.pk),
                "message": "go [sim:tokens=5]",
                "client_id": "al1",
            }
        )
    )
    await receive_until(alice_socket, 'message--assistant" data-status="complete"')
    assert await bob.receive_nothing(timeout=0.3)
    await alice_socket.disconnect()
    await bob.disconnect()


async def test_bob_cannot_send_into_alices_conversation(alice, bob_cookie):
    conversation = await alices_conversation(alice)
    bob = communicator(bob_cookie)
    assert (await bob.connect())[0]
    await bob.send_to(
        text_data=json.dumps(
            {
                "type": "send",
                "conversation": str(conversation.pk),
                "message": "injected",
                "client_id": "b1",
            }
        )
    )
    frame = await bob.receive_from()
    assert "That conversation was not found." in frame
    # Bob's own text comes back to him, and nothing was stored in alice's conversation.
    assert "injected</textarea>" in frame
    assert await count_messages(conversation) == 1
    await bob.disconnect()


async def test_bob_cannot_stop_alices_reply(alice, alice_cookie, bob_cookie):
    conversation = await alices_conversation(alice)
    alice_socket = communicator(alice_cookie)
    assert (await alice_socket.connect())[0]
    await alice_socket.send_to(
        text_data=json.dumps(
            {
                "type": "send",
                "conversation": str(conversation.pk),
                "message": "go [sim:tokens=60] [sim:latency=10]",
                "client_id": "al2",
            }
        )
    )
    frames = await receive_until(alice_socket, 'data-seq="1"')
    reply_id = frames[0].split('name="reply" value="')[1].split('"')[0]

    bob = communicator(bob_cookie)
    assert (await bob.connect())[0]
    await bob.send_to(text_data=json.dumps({"type": "stop", "reply": reply_id}))
    assert "There is no reply to stop." in await bob.receive_from()
    await receive_until(alice_socket, 'message--assistant" data-status="complete"')
    await alice_socket.disconnect()
    await bob.disconnect()
