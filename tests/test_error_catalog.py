"""Every entry of the error catalog, driven end to end through the simulator.

For each: what the user sees (the catalog's words, no status code, no JSON, no key), what
admins see (status, upstream type and message, request id: on the message, on its usage
records, in the admin and in the logs), how many attempts were made, and what was billed.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from billing import errors, meter
from billing.errors import CATALOG, NEVER
from billing.models import CatalogModel, DailySpend, UsageRecord, UserBudget
from conversations import dom
from conversations.models import Message
from llm.base import ErrorKind

from .conftest import TEST_KEY, communicator, receive_until, send_frame

DONE = 'message--assistant" data-status='
RAW = re.compile(r"\b(4\d\d|5\d\d)\b|[{}]|_error\b|request_id")


@dataclass(frozen=True)
class Case:
    kind: str
    prompt: str
    status: str = "failed"
    upstream: bool = True  # the failure came from the upstream (admins get its details)


CASES = [
    Case("authentication", "Hi [sim:error=401]"),
    Case("permission", "Hi [sim:error=403]"),
    Case("not_found", "Hi [sim:error=404]"),
    Case("invalid_request", "Hi [sim:error=400]"),
    Case("request_too_large", "Hi [sim:error=413]"),
    Case("context_too_long", "Hi [sim:error=context]"),
    Case("billing", "Hi [sim:error=402]"),
    Case("billing", "Hi [sim:error=credit]"),
    Case("rate_limit", "Hi [sim:error=429x9] [sim:retry-after=0.1]"),
    Case("spend_limit", "Hi [sim:error=spend-limit]"),
    Case("server", "Hi [sim:error=500x9]"),
    Case("overloaded", "Hi [sim:error=529x9]"),
    Case("overloaded", "Hi [sim:midstream-error=overloaded_error]"),
    Case("timeout", "Hi [sim:error=504x9]"),
    Case("timeout", "Hi [sim:slow-first=5]"),
    Case("connection", "Hi [sim:break-after=0]"),
    Case("cut_off", "Hi [sim:tokens=40]", status="cut_off", upstream=False),
    Case("budget_user", "Hi", upstream=False),
    Case("budget_service", "Hi", upstream=False),
    Case("budget_price", "Hi", upstream=False),
]


def test_every_catalog_entry_has_a_case_and_plain_words() -> None:
    tested = {case.kind for case in CASES}
    # Not driven here: failures the simulator cannot produce on request (tested in
    # test_provider), a server restart (test_process_death), and a reply shortened to fit
    # the budget left (test_money).
    elsewhere = {"malformed", "unknown", "interrupted", "budget_shortened"}
    assert set(CATALOG) == tested | elsewhere
    for kind, entry in CATALOG.items():
        assert not RAW.search(entry.user_message), kind
        assert entry.billed in {errors.NEVER, errors.USED}
        if kind in ErrorKind.__members__.values():
            assert entry.retried == ErrorKind(kind).retryable, kind


@pytest.fixture
def arranged(request, alice, settings):  # type: ignore[no-untyped-def]
    """What each case needs besides its prompt."""
    case: Case = request.param
    settings.LLM_FIRST_TOKEN_TIMEOUT = 0.5
    if case.kind == "cut_off":
        CatalogModel.objects.filter(slug="claude-4-6").update(max_output_tokens=25)
    elif case.kind == "budget_user":
        UserBudget.objects.create(user=alice, daily_cap_micros=10)
    elif case.kind == "budget_service":
        settings.DAILY_CAP_MICROS = 10
    elif case.kind == "budget_price":
        CatalogModel.objects.filter(slug="claude-4-6").update(input_price_per_1k_micros=None)
    return case


@pytest.mark.parametrize("arranged", CASES, ids=[c.prompt for c in CASES], indirect=True)
async def test_each_failure_is_explained_retried_and_billed_as_the_catalog_says(
    arranged: Case, alice, alice_cookie, caplog
):
    case = arranged
    entry = CATALOG[case.kind]
    caplog.set_level(logging.INFO)
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(text_data=send_frame(case.prompt, "c1"))
    frames = await receive_until(comm, f'{DONE}"{case.status}"', timeout=30)
    await comm.disconnect()
    reply, records = await _reply_and_records(alice)

    # What the user sees: the catalog's words (or the budget's own, with its reset time),
    # and nothing raw.
    final = frames[-1]
    shown = _visible_note(final)
    if case.kind.startswith("budget_") and case.kind != "budget_price":
        assert "resets at" in shown
    else:
        assert shown == entry.user_message
    assert not RAW.search(shown)
    assert TEST_KEY not in "".join(frames)
    offered = re.search(r'name="type" value="(retry|continue)"', final)
    assert (offered.group(1) if offered else "") == entry.action

    # Retries: the catalog's `retried` kinds are tried UPSTREAM_MAX_ATTEMPTS times.
    if case.kind.startswith("budget_"):
        assert records == [] and reply.reservation_id is None
    elif entry.retried:
        assert len(records) == 3
        assert records[-1].retries == 2
        assert any("Retrying in" in f for f in frames)
    else:
        assert len(records) == 1

    # Billing: never-billed failures cost nothing; the rest cost what the tokens say.
    for record in records:
        expected = meter.cost_micros(record.input_tokens, record.output_tokens, 1000, 2000)
        assert record.charged_micros == expected
        if entry.billed == NEVER:
            assert record.charged_micros == 0
    charged = sum(r.charged_micros for r in records)
    assert (reply.cost_micros or 0) == charged
    spent = await _spent_today(alice)
    assert spent == charged

    # What admins see: the upstream's status or type, its message and the request id, on
    # the message, its usage records, the admin page and the log; never the key.
    if case.upstream:
        assert reply.error_kind == case.kind
        assert f"kind={case.kind}" in reply.error_detail
        assert "message=" in reply.error_detail
        assert records[-1].error_detail == reply.error_detail
        if "status=" in reply.error_detail:  # an HTTP error (not a mid-stream event)
            assert "request_id=req_" in reply.error_detail
        page = await _admin_page(reply.pk)
        assert reply.upstream_request_id in page or "request_id=" in page
        assert f"kind={case.kind}" in page
        assert TEST_KEY not in page
        assert any(f"kind={case.kind}" in r.getMessage() for r in caplog.records)
    assert TEST_KEY not in caplog.text


async def test_a_cut_off_reply_continues_as_the_same_reply_billed_per_request(alice, alice_cookie):
    await database_sync_to_async(CatalogModel.objects.filter(slug="claude-4-6").update)(
        max_output_tokens=25
    )
    comm = communicator(alice_cookie)
    await comm.connect()
    prompt = "Tell me more [sim:tokens=60]"
    await comm.send_to(text_data=send_frame(prompt, "k1"))
    await receive_until(comm, f'{DONE}"cut_off"')
    reply, records = await _reply_and_records(alice)
    first_text, first_cost = reply.content, reply.cost_micros
    assert records[0].output_tokens == 25

    await comm.send_to(text_data=json.dumps({"type": "continue", "reply": reply.pk}))
    frames = await receive_until(comm, f'{DONE}"cut_off"')
    assert f'id="{dom.element_id(reply.pk)}"' in frames[0]  # re-rendered in place, streaming again
    await comm.send_to(text_data=json.dumps({"type": "continue", "reply": reply.pk}))
    frames = await receive_until(comm, f'{DONE}"complete"')
    await comm.disconnect()

    from llm.simulator.replies import reply_text

    reply, records = await _reply_and_records(alice)
    assert reply.content == reply_text(prompt, tokens=60)  # one reply, word for word
    assert reply.content.startswith(first_text)
    assert [r.output_tokens for r in records] == [25, 25, 10]
    assert reply.output_tokens == 60
    assert reply.cost_micros == sum(r.charged_micros for r in records) > first_cost
    assert await _spent_today(alice) == reply.cost_micros
    assert 'value="continue"' not in frames[-1]
    assert await database_sync_to_async(Message.objects.filter(role="assistant").count)() == 1


async def test_a_failed_reply_is_retried_as_a_new_turn(alice, alice_cookie):
    comm = communicator(alice_cookie)
    await comm.connect()
    prompt = "Hi [sim:error=500x3]"  # fails the turn's three attempts, then works
    await comm.send_to(text_data=send_frame(prompt, "t1"))
    frames = await receive_until(comm, f'{DONE}"failed"', timeout=30)
    failed = await database_sync_to_async(Message.objects.get)(role="assistant")
    assert 'value="retry"' in frames[-1]
    await comm.send_to(text_data=json.dumps({"type": "retry", "reply": failed.pk}))
    frames = await receive_until(comm, f'{DONE}"complete"', timeout=30)
    # A second Retry of the same failed reply is refused: it is no longer the latest.
    await comm.send_to(text_data=json.dumps({"type": "retry", "reply": failed.pk}))
    refusal = await receive_until(comm, "chat-error")
    await comm.disconnect()
    assert "cannot be retried" in refusal[-1] or "latest reply" in refusal[-1]

    replies = await database_sync_to_async(
        lambda: list(Message.objects.filter(role="assistant").order_by("id"))
    )()
    assert [r.status for r in replies] == ["failed", "complete"]
    assert replies[1].reply_to_id == replies[0].reply_to_id  # the same question
    assert replies[1].reservation_id != replies[0].reservation_id
    records = await database_sync_to_async(
        lambda: list(UsageRecord.objects.filter(message_id=replies[1].pk))
    )()
    assert len(records) == 1 and records[0].outcome == "complete"  # billed as one turn
    assert replies[1].cost_micros == records[0].charged_micros > 0


async def test_a_user_cannot_start_more_than_user_rpm_requests_a_minute(
    alice, alice_cookie, settings
):
    settings.USER_RPM = 2
    comm = communicator(alice_cookie)
    await comm.connect()
    conversation = ""
    for n in range(2):
        await comm.send_to(text_data=send_frame(f"Hi {n} [sim:tokens=2]", f"u{n}", conversation))
        await receive_until(comm, f'{DONE}"complete"')
        conversation = await database_sync_to_async(
            lambda: str(Message.objects.first().conversation_id)
        )()
    await comm.send_to(text_data=send_frame("One more", "u3", conversation))
    frames = await receive_until(comm, "chat-error")
    await comm.disconnect()
    assert "faster than 2 messages a minute" in frames[-1]
    assert "One more" in frames[-1]  # the text goes back in the box
    assert await database_sync_to_async(Message.objects.count)() == 4


async def test_a_first_message_refused_for_speed_leaves_no_empty_conversation(
    alice, alice_cookie, settings
):
    """Measured in a browser with USER_RPM=1: a new chat's first message refused by the
    per-minute limit left an empty, untitled conversation in the list."""
    from conversations.models import Conversation

    settings.USER_RPM = 1
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(text_data=send_frame("First [sim:tokens=2]", "n1"))
    await receive_until(comm, f'{DONE}"complete"')
    await comm.send_to(text_data=send_frame("A new chat, too soon", "n2"))  # a new chat
    frames = await receive_until(comm, "chat-error")
    await comm.disconnect()
    assert "faster than 1 message a minute" in frames[-1]  # one message, not "1 messages"
    assert "A new chat, too soon" in frames[-1]  # the text goes back in the box
    titles = await database_sync_to_async(
        lambda: list(Conversation.objects.values_list("title", flat=True))
    )()
    assert titles == ["First [sim:tokens=2]"]


async def test_a_slow_first_token_shows_still_thinking(alice, alice_cookie, settings):
    settings.THINKING_CUE_SECONDS = 0.3
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(text_data=send_frame("Hi [sim:slow-first=1] [sim:tokens=3]", "s1"))
    frames = await receive_until(comm, f'{DONE}"complete"')
    await comm.disconnect()
    cue = next(i for i, f in enumerate(frames) if "Still thinking" in f)
    first_text = next(i for i, f in enumerate(frames) if "beforeend:#m-" in f)
    assert cue < first_text


async def test_a_silence_between_tokens_times_out_and_keeps_the_text(alice, alice_cookie, settings):
    settings.LLM_TOKEN_TIMEOUT = 0.3
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(text_data=send_frame("Hi [sim:tokens=20] [sim:latency=600]", "w1"))
    frames = await receive_until(comm, f'{DONE}"failed"')
    await comm.disconnect()
    reply, records = await _reply_and_records(alice)
    assert reply.error_kind == "timeout" and "No token for 0.3 s" in reply.error_detail
    assert len(records) == 1  # text had been shown: not retried
    assert reply.content and records[0].output_tokens >= 1
    assert CATALOG["timeout"].user_message in frames[-1]


# --- helpers ------------------------------------------------------------------------------


def _visible_note(frame: str) -> str:
    match = re.search(r'<p class="message-note[^"]*"[^>]*>(.*?)</p>', frame, re.S)
    return match.group(1).strip().replace("&#x27;", "'") if match else ""


@database_sync_to_async
def _reply_and_records(user) -> tuple[Message, list[UsageRecord]]:  # type: ignore[no-untyped-def]
    reply = Message.objects.filter(conversation__owner=user, role="assistant").latest("id")
    return reply, list(UsageRecord.objects.filter(message_id=reply.pk).order_by("id"))


@database_sync_to_async
def _spent_today(user) -> int:  # type: ignore[no-untyped-def]
    row = DailySpend.objects.filter(scope=f"user:{user.pk}", day=meter.today()).first()
    return row.spent_micros if row else 0


@database_sync_to_async
def _admin_page(message_id: int) -> str:
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_superuser("root-admin", password="x-admin-pass-1")
    client = Client()
    client.force_login(admin)
    response = client.get(f"/admin/conversations/message/{message_id}/change/")
    assert response.status_code == 200
    return response.content.decode()


async def test_continue_stops_when_the_question_no_longer_fits_beside_the_reply(
    alice, alice_cookie
):
    from .test_context import tiny_model

    await tiny_model(context_window=70, max_output=12)
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(
        text_data=json.dumps(
            {
                "type": "send",
                "message": "Long please [sim:tokens=200]",
                "client_id": "f1",
                "conversation": "",
                "model": "tiny-claude",
            }
        )
    )
    await receive_until(comm, f'{DONE}"cut_off"')
    reply, _ = await _reply_and_records(alice)
    for _ in range(10):
        await comm.send_to(text_data=json.dumps({"type": "continue", "reply": reply.pk}))
        frames = await receive_until(comm, "chat-error")
        if "can read back" in frames[-1]:
            break
        await receive_until(comm, f'{DONE}"cut_off"')
    else:
        pytest.fail("Continue was never refused")
    await comm.disconnect()
    reply, records = await _reply_and_records(alice)
    assert reply.status == "cut_off" and len(records) >= 2
    assert all(r.outcome == "cut_off" for r in records)  # never an upstream refusal


async def test_a_continue_stopped_before_new_text_can_still_continue(alice, alice_cookie):
    await database_sync_to_async(CatalogModel.objects.filter(slug="claude-4-6").update)(
        max_output_tokens=10
    )
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(text_data=send_frame("Slow start [sim:tokens=40] [sim:slow-first=1]", "p1"))
    await receive_until(comm, f'{DONE}"cut_off"')
    reply, _ = await _reply_and_records(alice)
    await comm.send_to(text_data=json.dumps({"type": "continue", "reply": reply.pk}))
    await receive_until(comm, dom.element_id(reply.pk, "status"))
    await comm.send_to(text_data=json.dumps({"type": "stop", "reply": reply.pk}))
    frames = await receive_until(comm, f'{DONE}"cut_off"')
    await comm.disconnect()
    after, records = await _reply_and_records(alice)
    assert after.content == reply.content  # nothing added
    assert 'value="continue"' in frames[-1] and "You stopped" not in frames[-1]
    assert [r.outcome for r in records] == ["cut_off", "stopped"]  # each request billed
    assert after.cost_micros == sum(r.charged_micros for r in records)


def test_a_key_repeated_by_the_upstream_is_redacted_for_admins(settings):
    from llm.base import StreamError

    settings.OPENAI_API_KEY = "sk-live-1234567890abcdef"
    error = StreamError(
        kind=ErrorKind.AUTHENTICATION,
        message="Incorrect API key provided: sk-live-1234567890abcdef.",
        status=401,
    )
    detail = errors.admin_detail(error)
    assert "sk-live" not in detail and "[redacted]" in detail
