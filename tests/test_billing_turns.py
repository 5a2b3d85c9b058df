"""Billing through real turns: every call metered, charged for what was used, once."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from billing import meter
from billing.calls import Call, Listener, Priority
from billing.catalog import ProviderSpec
from billing.models import DailySpend, Reservation, UsageRecord, UserBudget
from conversations import endings, services, turns
from conversations.models import Conversation, Message
from llm.base import ChatMessage, ChatRequest
from llm.simulator.replies import count_tokens

from .conftest import communicator, receive_until, send_frame

DONE = 'message--assistant" data-status='


async def turn(cookie: str, text: str, until: str, client_id: str = "b1") -> list[str]:
    comm = communicator(cookie)
    await comm.connect()
    await comm.send_to(text_data=send_frame(text, client_id))
    frames = await receive_until(comm, until)
    await comm.disconnect()
    return frames


@database_sync_to_async
def reply_and_usage(user) -> tuple[Message, UsageRecord, DailySpend]:
    reply = Message.objects.get(conversation__owner=user, role="assistant")
    record = UsageRecord.objects.get(message_id=reply.pk)
    row = DailySpend.objects.get(scope=f"user:{user.pk}", day=meter.today())
    return reply, record, row


async def test_a_turn_is_reserved_then_charged_what_it_used(alice, alice_cookie):
    frames = await turn(alice_cookie, "Price me [sim:tokens=40]", DONE + '"complete"')
    reply, record, row = await reply_and_usage(alice)
    assert (record.input_tokens, record.output_tokens) == (reply.input_tokens, 40)
    assert record.charged_micros == reply.input_tokens + 2 * 40 == reply.cost_micros
    assert (row.spent_micros, row.reserved_micros) == (record.charged_micros, 0)
    assert record.outcome == "complete" and record.upstream_request_id.startswith("req_")
    assert record.ttft_ms is not None and record.duration_ms >= record.ttft_ms
    reservation = await database_sync_to_async(Reservation.objects.get)(pk=reply.reservation_id)
    assert reservation.state == "settled" and reservation.message_id == reply.pk
    # The page shows the reply's cost and the new spend, live.
    assert meter.format_usd(record.charged_micros) in frames[-1]
    assert 'aria-label="Today\'s spend"' in frames[-1]
    assert f"{meter.format_usd(record.charged_micros)} of $5.00 today" in frames[-1]


async def test_a_stopped_reply_is_billed_for_what_was_received(alice, alice_cookie):
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(text_data=send_frame("Long [sim:tokens=300] [sim:latency=15]", "s1"))
    frames = await receive_until(comm, 'data-seq="3"')
    reply_id = frames[1].split('name="reply" value="')[1].split('"')[0]
    await comm.send_to(text_data=json.dumps({"type": "stop", "reply": reply_id}))
    await receive_until(comm, DONE + '"stopped"')
    await comm.disconnect()
    reply, record, row = await reply_and_usage(alice)
    received = count_tokens(reply.content)  # the simulator's tokens that reached us
    assert 0 < received < 300
    assert record.output_tokens == reply.output_tokens == received
    assert record.charged_micros == record.input_tokens + 2 * received == row.spent_micros
    assert record.outcome == "stopped"


async def test_a_broken_stream_keeps_its_text_and_is_billed_for_it(alice, alice_cookie):
    await turn(alice_cookie, "Hi [sim:tokens=50] [sim:break-after=6]", DONE + '"failed"')
    reply, record, row = await reply_and_usage(alice)
    assert count_tokens(reply.content) == 6 == record.output_tokens
    assert record.charged_micros == record.input_tokens + 12 == row.spent_micros
    assert (record.outcome, record.error_kind) == ("failed", "connection")


async def test_a_refused_request_costs_nothing(alice, alice_cookie):
    await turn(alice_cookie, "Hi [sim:error=401]", DONE + '"failed"')
    _reply, record, row = await reply_and_usage(alice)
    assert (record.input_tokens, record.output_tokens, record.charged_micros) == (0, 0, 0)
    assert record.error_kind == "authentication" and row.reserved_micros == 0


async def test_the_days_usage_records_add_up_to_the_days_spend(alice, alice_cookie):
    for i, text in enumerate(
        [
            "a [sim:tokens=9]",
            "b [sim:error=500]",
            "c [sim:tokens=3]",
            "d [sim:tokens=20] [sim:break-after=4]",
        ]
    ):
        comm = communicator(alice_cookie)
        await comm.connect()
        conversation = await database_sync_to_async(
            lambda: str(
                Conversation.objects.filter(owner=alice).values_list("pk", flat=True).first() or ""
            )
        )()
        await comm.send_to(text_data=send_frame(text, f"d{i}", conversation))
        await receive_until(comm, 'message--assistant" data-status="', timeout=20)
        await receive_until(comm, 'id="spend-meter"', timeout=10)
        await comm.disconnect()

    @database_sync_to_async
    def totals():
        day = meter.today()
        user_row = DailySpend.objects.get(scope=f"user:{alice.pk}", day=day)
        service_row = DailySpend.objects.get(scope="service", day=day)
        return (
            meter.ledger_total(day, user=alice),
            user_row.spent_micros,
            meter.ledger_total(day),
            service_row.spent_micros,
            UsageRecord.objects.count(),
        )

    user_ledger, user_spent, ledger, service_spent, records = await totals()
    assert user_ledger == user_spent > 0 and ledger == service_spent == user_spent
    # One record per upstream request: the 500 was tried three times.
    assert records == 1 + 3 + 1 + 1


async def test_over_budget_is_refused_before_any_call_and_the_message_kept(
    alice, alice_cookie, simulator
):
    await database_sync_to_async(UserBudget.objects.create)(user=alice, daily_cap_micros=100)
    requests_before = simulator.app.stats.requests
    frames = await turn(alice_cookie, "Too expensive", DONE + '"failed"')
    assert simulator.app.stats.requests == requests_before
    assert (
        "You&#x27;ve used $0.00 of your $0.0001 daily budget. It resets at 00:00 UTC"
        in (frames[-1])
    )
    messages = await database_sync_to_async(
        lambda: list(Message.objects.filter(conversation__owner=alice).order_by("id"))
    )()
    assert [(m.role, m.content) for m in messages] == [("user", "Too expensive"), ("assistant", "")]
    assert messages[1].error_kind == "budget_user" and messages[1].reservation_id is None


def test_recovery_settles_a_turn_whose_process_died(alice):
    conversation = services.conversation_create(user=alice, model="claude-4-6")
    started = turns.turn_start(
        user=alice, conversation=conversation, text="Anyone there?", client_id="dead1"
    )
    # The generation checkpointed some text, then its process died.
    endings.reply_checkpoint(reply_id=started.reply.pk, content="Half an ans", seq=3)
    Message.objects.filter(pk=started.reply.pk).update(
        updated_at=timezone.now() - timedelta(minutes=5)
    )
    assert endings.recover_stale_turns() == 1
    assert endings.recover_stale_turns() == 0  # once
    reply = Message.objects.get(pk=started.reply.pk)
    assert (reply.status, reply.content, reply.error_kind) == (
        "interrupted",
        "Half an ans",
        "interrupted",
    )
    assert "interrupted" in reply.error_text
    reservation = Reservation.objects.get(pk=reply.reservation_id)
    assert reservation.state == "settled"
    row = DailySpend.objects.get(scope=f"user:{alice.pk}")
    assert row.reserved_micros == 0
    assert row.spent_micros == reservation.charged_micros == reply.cost_micros > 0


def test_a_live_turn_is_left_alone_by_recovery(alice):
    conversation = services.conversation_create(user=alice, model="claude-4-6")
    turns.turn_start(user=alice, conversation=conversation, text="Hi", client_id="live1")
    assert endings.recover_stale_turns() == 0


def test_a_call_without_a_reservation_never_calls_the_model(simulator):
    before = simulator.app.stats.requests
    with pytest.raises(ValueError, match="needs a budget reservation"):
        Call(
            reservation_id=None,
            payer="user:1",
            spec=ProviderSpec("anthropic", simulator.url, "k"),
            request=ChatRequest("claude-4-6", [ChatMessage("user", "x")], 5),
            input_estimate=1,
            priority=Priority.INTERACTIVE,
            listener=Listener(),
        )
    assert simulator.app.stats.requests == before


APP_PACKAGES = ("accounts", "billing", "chatsite", "conversations", "llm", "ops", "support")


def _app_sources() -> list[tuple[str, str]]:
    root = Path(__file__).resolve().parent.parent
    return sorted(
        (str(path.relative_to(root)), path.read_text())
        for folder in APP_PACKAGES
        for path in (root / folder).rglob("*.py")
        if "migrations" not in path.parts
    )


def test_only_the_metered_call_calls_a_model():
    """Every path that calls a model (a chat turn today; the API and batch jobs next) goes
    through billing.calls.Call, which refuses to run without a reservation."""
    callers = [
        path
        for path, text in _app_sources()
        if re.search(r"\.stream\(|catalog\.client\(", text) and not path.startswith("llm/")
    ]
    assert callers == ["billing/calls.py"]


def test_only_billing_reserves_and_settles():
    """Nothing outside billing/ reserves or settles money itself: they go through the
    metered call (billing.calls), which holds the one path from reserve to settle."""
    callers = [
        path
        for path, text in _app_sources()
        if re.search(r"meter\.(reserve|settle)\b", text) and not path.startswith("billing/")
    ]
    assert callers == []
