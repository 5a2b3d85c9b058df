"""Retries: only before the first token, only what may work next time, each metered."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from billing.models import UsageRecord
from conversations.models import Message

from .conftest import communicator, receive_until

DONE = 'message--assistant" data-status='


async def run_turn(cookie: str, text: str, until: str) -> tuple[list[str], float]:
    comm = communicator(cookie)
    await comm.connect()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await comm.send_to(
        text_data=json.dumps(
            {"type": "send", "message": text, "client_id": "r1", "conversation": ""}
        )
    )
    frames = await receive_until(comm, until, timeout=30)
    await comm.disconnect()
    return frames, loop.time() - started


@database_sync_to_async
def reply_and_records(user) -> tuple[Message, list[UsageRecord]]:
    reply = Message.objects.get(conversation__owner=user, role="assistant")
    return reply, list(UsageRecord.objects.filter(message_id=reply.pk).order_by("id"))


async def test_a_server_error_before_any_text_is_retried_until_it_works(alice, alice_cookie):
    frames, _ = await run_turn(
        alice_cookie, "Hi [sim:error=500x2] [sim:tokens=5]", DONE + '"complete"'
    )
    reply, records = await reply_and_records(alice)
    assert [r.outcome for r in records] == ["failed", "failed", "complete"]
    assert [r.error_kind for r in records] == ["server", "server", ""]
    assert [r.charged_micros for r in records[:2]] == [0, 0]
    assert records[-1].retries == 2 and records[-1].output_tokens == 5
    assert any("Retrying in" in f for f in frames)
    assert reply.status == "complete"


@pytest.mark.parametrize(
    ("directive", "kind"),
    [
        ("401", "authentication"),
        ("400", "invalid_request"),
        ("402", "billing"),
        ("403", "permission"),
        ("404", "not_found"),
        ("413", "request_too_large"),
        ("spend-limit", "spend_limit"),
        ("credit", "billing"),
    ],
)
async def test_what_cannot_work_next_time_is_never_retried(alice, alice_cookie, directive, kind):
    await run_turn(alice_cookie, f"Hi [sim:error={directive}]", DONE + '"failed"')
    _reply, records = await reply_and_records(alice)
    assert [(r.outcome, r.error_kind) for r in records] == [("failed", kind)]


async def test_a_rate_limit_is_retried_after_its_retry_after(alice, alice_cookie):
    _frames, took = await run_turn(
        alice_cookie, "Hi [sim:error=429x1] [sim:retry-after=1] [sim:tokens=3]", DONE + '"complete"'
    )
    _reply, records = await reply_and_records(alice)
    assert [r.error_kind for r in records] == ["rate_limit", ""]
    assert took >= 1.0  # it waited as told


async def test_after_text_was_shown_a_failure_keeps_the_partial_reply(alice, alice_cookie):
    frames, _ = await run_turn(
        alice_cookie,
        "Hi [sim:tokens=30] [sim:midstream-error=overloaded_error@5]",
        DONE + '"failed"',
    )
    reply, records = await reply_and_records(alice)
    assert len(records) == 1 and records[0].output_tokens == 5
    assert reply.content and "overloaded" in frames[-1]


async def test_an_overload_before_any_text_is_retried_a_few_times_then_explained(
    alice, alice_cookie
):
    frames, _ = await run_turn(
        alice_cookie, "Hi [sim:midstream-error=overloaded_error]", DONE + '"failed"'
    )
    _reply, records = await reply_and_records(alice)
    assert [r.error_kind for r in records] == ["overloaded"] * 3
    assert "The model service is overloaded right now" in frames[-1]
    assert "529" not in frames[-1] and "overloaded_error" not in frames[-1]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("2", 2.0), ("0.5", 0.5), ("-5", 0.0), ("1e999", 600.0), ("nan", None), ("soon", None)],
)
def test_a_retry_after_is_read_within_bounds(header, seconds):
    """No header can pause the service's requests for ever, or for a negative time."""
    import httpx

    from llm.http import retry_after

    assert retry_after(httpx.Headers({"retry-after": header})) == seconds
