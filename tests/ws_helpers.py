"""Helpers for the hostile-input tests (client fields, transport limits, fuzzing): a
signed-in socket, a conversation with stored messages, a probe that the socket still
answers, and what the database holds afterwards."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from billing.models import DailySpend, Reservation, UsageRecord
from conversations import dom
from conversations.models import Conversation, Message

from .conftest import communicator, receive_until

ERROR = 'id="chat-error"'  # every error frame replaces the composer's error line
DONE = 'message--assistant" data-status="complete"'


async def connected(cookie: str) -> WebsocketCommunicator:
    comm = communicator(cookie)
    ok, _ = await comm.connect()
    assert ok
    return comm


@dataclass(frozen=True)
class Stored:
    """A conversation with complete messages, as they were when the test began."""

    conversation: Conversation
    contents: dict[int, tuple[str, str]]  # id -> (role, content)
    user_ids: list[int]
    reply_ids: list[int]


@database_sync_to_async
def stored_conversation(user: object, *, turns: int = 2) -> Stored:
    conversation = Conversation.objects.create(owner=user, model="claude-4-6", title="Kept")
    contents: dict[int, tuple[str, str]] = {}
    user_ids, reply_ids = [], []
    for n in range(turns):
        question = Message.objects.create(
            conversation=conversation,
            role=Message.Role.USER,
            content=f"Question {n}: déjà vu, 日本語, 🙂",
            client_id=f"seed{n}",
        )
        answer = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            content=f"Answer {n}",
            content_html=f"<p>Answer {n}</p>",
            reply_to=question,
            model="claude-4-6",
        )
        for message in (question, answer):
            contents[message.pk] = (message.role, message.content)
        user_ids.append(question.pk)
        reply_ids.append(answer.pk)
    return Stored(conversation, contents, user_ids, reply_ids)


@database_sync_to_async
def still_stored(stored: Stored) -> dict[int, tuple[str, str]]:
    """The stored messages' roles and contents now, by id (a lost one is missing)."""
    rows = Message.objects.filter(pk__in=list(stored.contents)).values_list("pk", "role", "content")
    return {pk: (role, content) for pk, role, content in rows}


async def probe(comm: WebsocketCommunicator, reply_id: int, *, timeout: float = 10) -> None:
    """A known-good request the consumer must still answer: subscribe to the reply's
    conversation and resume the (ended) reply, which sends it again as it ended."""
    conversation = await database_sync_to_async(
        lambda: str(Message.objects.get(pk=reply_id).conversation_id)
    )()
    await comm.send_to(
        text_data=json.dumps(
            {"type": "subscribe", "conversation": conversation, "resume": {str(reply_id): 0}}
        )
    )
    await receive_until(comm, f'id="{dom.element_id(reply_id)}"', timeout=timeout)


async def assert_alive(comm: WebsocketCommunicator) -> None:
    """The consumer did not raise: its application future is still running."""
    future = comm.future
    assert not future.done(), f"the consumer ended: {future.exception()!r}"


async def finish_generations() -> None:
    """Stop every generation still running in this process and wait for it to settle."""
    from conversations import generation

    running = list(generation._running.values())
    for reply in running:
        reply.stop()
    await asyncio.gather(*(reply.task for reply in running), return_exceptions=True)


@dataclass(frozen=True)
class Ledger:
    messages: list[tuple[str, str]]  # (role, content) of every message of the user's
    reservations: int
    usage_records: int
    spent_micros: int  # the user's spend today, settled
    reserved_micros: int  # still held


@database_sync_to_async
def ledger(user: object) -> Ledger:
    spend = DailySpend.objects.filter(user=user)
    return Ledger(
        messages=list(
            Message.objects.filter(conversation__owner=user)
            .order_by("id")
            .values_list("role", "content")
        ),
        reservations=Reservation.objects.filter(user=user).count(),
        usage_records=UsageRecord.objects.filter(user=user).count(),
        spent_micros=sum(spend.values_list("spent_micros", flat=True)),
        reserved_micros=sum(spend.values_list("reserved_micros", flat=True)),
    )


# What each message type says when the id it names does not lead to something of yours.
NOT_YOURS = {
    "subscribe": ("conversation", "That conversation was not found."),
    "resume": ("reply", "That reply was not found."),
    "stop": ("reply", "There is no reply to stop."),
    "retry": ("reply", "There is no reply to retry."),
    "continue": ("reply", "There is no reply to continue."),
    "regenerate": ("reply", "There is no reply to regenerate."),
    "edit": ("message", "That message was not found."),
    "send": ("conversation", "That conversation was not found."),
}
