"""Money as people read it (Step 10): one format for every amount, in the reader's
language; budget words that say what happened and offer only what can work; notices
stored as figures and written when shown; Retry in the failed reply's place; the page's
figures (spend, cost hint, context gauge) sent with every turn's end."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone, translation

from billing import meter
from billing.models import DailySpend, Reservation, UsageRecord, UserBudget
from conversations import dom, figures, frames, turns
from conversations.models import Conversation, Message, context_tokens

from .conftest import communicator, receive_until, send_frame

DONE = 'message--assistant" data-status='


def client_for(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


async def one_turn(cookie: str, text: str, status: str) -> list[str]:
    comm = communicator(cookie)
    await comm.connect()
    await comm.send_to(text_data=send_frame(text, "m1"))
    got = await receive_until(comm, f'{DONE}"{status}"', timeout=30)
    await comm.disconnect()
    return got


@database_sync_to_async
def the_reply(user) -> Message:  # type: ignore[no-untyped-def]
    return Message.objects.filter(conversation__owner=user, role="assistant").latest("id")


# --- one money format ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("micros", "english", "french"),
    [
        (0, "$0.00", "0,00\u00a0$"),
        (226, "$0.000226", "0,000226\u00a0$"),
        (2_000, "$0.002", "0,002\u00a0$"),
        (10_118, "$0.010118", "0,010118\u00a0$"),
        (5_000_000, "$5.00", "5,00\u00a0$"),
        (1_234_500_000, "$1,234.50", "1\u00a0234,50\u00a0$"),
        (-1_500, "-$0.0015", "-0,0015\u00a0$"),
    ],
)
def test_every_amount_is_its_exact_micro_dollars_in_the_readers_format(micros, english, french):
    assert meter.format_usd(micros) == english
    with translation.override("fr"):
        assert meter.format_usd(micros) == french


def test_the_page_gets_the_pieces_to_write_money_as_the_server_does():
    assert meter.money_format() == {"pattern": "${amount}", "decimal": ".", "thousands": ","}
    with translation.override("fr"):
        assert meter.money_format() == {
            "pattern": "{amount}\u00a0$",
            "decimal": ",",
            "thousands": "\u00a0",
        }


def test_the_usage_total_is_the_sum_of_its_rows(alice):
    conversation = Conversation.objects.create(owner=alice, model="claude-4-6", title="Sums")
    reservation = Reservation.objects.create(
        user=alice,
        day=meter.today(),
        model="claude-4-6",
        input_price_per_1k_micros=1000,
        output_price_per_1k_micros=2000,
        input_tokens_estimate=1,
        max_tokens=1,
        amount_micros=20_000,
    )
    for charged in (10_000, 118):
        UsageRecord.objects.create(
            reservation=reservation,
            user=alice,
            day=meter.today(),
            conversation_id=conversation.pk,
            model="claude-4-6",
            input_tokens=1,
            output_tokens=1,
            cost_micros=charged,
            charged_micros=charged,
            outcome="complete",
        )
    DailySpend.objects.create(
        scope=f"user:{alice.pk}", day=meter.today(), user=alice, spent_micros=10_118
    )
    page = client_for(alice).get("/usage/").content.decode()
    assert "$0.010118 of $5.00 today" in page
    row = re.search(r"<td>2</td><td>([^<]+)</td>", page)
    assert row is not None and row.group(1) == "$0.010118"


# --- budget refusals ---------------------------------------------------------------------------
async def test_a_budget_refusal_says_when_it_resets_offers_no_retry_and_pauses_sending(
    alice, alice_cookie
):
    await database_sync_to_async(UserBudget.objects.create)(user=alice, daily_cap_micros=10)
    got = await one_turn(alice_cookie, "Hi", "failed")
    final = got[-1]
    reply = await the_reply(alice)
    assert reply.error_kind == "budget_user"
    assert set(reply.notice_figures) == {"spent", "cap", "resets_at"}
    assert reply.notice_figures["cap"] == 10
    assert re.search(r"It resets at 00:00 UTC \(in (\d+ h )?\d+ min\)", final)
    assert 'value="retry"' not in final and 'value="regenerate"' not in final
    # The spend meter shows the budget as used, and the cost hint's pause words.
    assert "spend-meter--paused" in final and 'data-paused="true"' in final
    assert "sending is paused until 00:00 UTC" in final
    page = await database_sync_to_async(
        lambda: client_for(alice).get(f"/c/{reply.conversation_id}/").content.decode()
    )()
    # Paused, and the bar is what was spent (nothing yet of a 10 micro-dollar budget).
    assert "spend-meter--paused" in page and 'value="0"' in page


def test_a_refusal_reads_in_the_readers_language_and_offers_retry_after_the_reset(alice):
    conversation = Conversation.objects.create(owner=alice, model="claude-4-6")
    asked = Message.objects.create(conversation=conversation, role="user", content="Hi")
    reset = meter.resets_at(meter.today())
    refused = Message.objects.create(
        conversation=conversation,
        role="assistant",
        status="failed",
        reply_to=asked,
        error_kind="budget_user",
        notice_figures={"spent": 1_764, "cap": 2_000, "resets_at": reset.isoformat()},
    )
    assert refused.error_text.startswith("You've used $0.001764 of your $0.002 daily budget.")
    assert refused.offer == ""
    with translation.override("fr"):
        words = refused.error_text
    assert words.startswith("Vous avez utilisé 0,001764\u00a0$ de votre budget quotidien de 0,002")
    assert "Il se renouvelle à 00:00 UTC (dans" in words
    # After the reset, the same refusal says so, and Retry can work again.
    refused.notice_figures["resets_at"] = (timezone.now() - timedelta(minutes=1)).isoformat()
    assert "It has reset since" in refused.error_text
    assert refused.offer == "retry"


def test_old_notices_become_figures(transactional_db):
    executor = MigrationExecutor(connection)
    before = [("conversations", "0008_message_context_tokens")]
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    user = apps.get_model("auth", "User").objects.create(username="old")
    conversation = apps.get_model("conversations", "Conversation").objects.create(
        owner=user, model="claude-4-6"
    )
    old = apps.get_model("conversations", "Message")
    words = "You've used $0.0018 of your $0.0020 daily budget. It resets at 00:00 UTC (in 2 h)."
    refused = old.objects.create(
        conversation=conversation, role="assistant", error_kind="budget_user", notice=words
    )
    service = old.objects.create(
        conversation=conversation,
        role="assistant",
        error_kind="budget_service",
        notice="Le service a atteint sa limite de dépenses du jour de $100.00. Elle se …",
    )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    refused, service = Message.objects.get(pk=refused.pk), Message.objects.get(pk=service.pk)
    assert refused.notice_figures["spent"] == 1_800 and refused.notice_figures["cap"] == 2_000
    assert service.notice_figures["cap"] == 100_000_000
    day = refused.created_at.astimezone(meter.billing_zone()).date()
    assert refused.notice_figures["resets_at"] == meter.resets_at(day).isoformat()
    with translation.override("fr"):
        assert refused.error_text.startswith("Vous avez utilisé 0,0018\u00a0$")


# --- a reply shortened to fit the budget ---------------------------------------------------------
async def test_a_reply_shortened_to_fit_the_budget_says_so_and_offers_continue_only_if_paid(
    alice, alice_cookie, settings
):
    settings.MIN_USEFUL_OUTPUT_TOKENS = 5
    await database_sync_to_async(UserBudget.objects.create)(user=alice, daily_cap_micros=120)
    got = await one_turn(alice_cookie, "Tell me [sim:tokens=200]", "cut_off")
    reply = await the_reply(alice)
    assert 0 < reply.notice_figures["shortened_to"] < 200
    final = got[-1]
    assert "This reply was shortened to fit your budget left today. It resets at" in final
    assert "reached the length limit" not in final
    assert 'value="continue"' not in final  # the money left cannot pay for more
    assert 'value="regenerate"' not in final  # nor for a new answer
    # With more budget, Continue is offered again.
    await database_sync_to_async(UserBudget.objects.filter(user=alice).update)(
        daily_cap_micros=5_000_000
    )
    shown = await database_sync_to_async(frames.message_replaced)(reply)
    assert 'value="continue"' in shown
    # Once the reset has passed, the note no longer names it.
    reply.notice_figures["resets_at"] = (timezone.now() - timedelta(minutes=1)).isoformat()
    assert reply.error_text == "This reply was shortened to fit your budget left today."


# --- failed replies -------------------------------------------------------------------------------
async def test_a_refused_key_shows_no_zero_footer_and_no_regenerate(alice, alice_cookie):
    got = await one_turn(alice_cookie, "Hi [sim:error=401]", "failed")
    final = got[-1]
    assert "0 in · 0 out" not in final and "$0.00" not in final.split("spend-meter")[0]
    assert 'value="regenerate"' not in final and 'value="retry"' not in final


def test_nothing_ahead_is_waiting_for_the_model_not_queued_zero():
    assert "Waiting for the model…" in frames.reply_status(7, queued=0)
    assert "Queued: 0" not in frames.reply_status(7, queued=0)
    assert "Queued: 2 requests ahead of yours…" in frames.reply_status(7, queued=2)
    assert "Thinking…" in frames.reply_status(7)


async def test_retry_replaces_the_failed_reply_in_place_and_the_records_keep_both(
    alice, alice_cookie
):
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(text_data=send_frame("Retry me in place [sim:error=500x3]", "r1"))
    await receive_until(comm, f'{DONE}"failed"', timeout=30)
    failed = await the_reply(alice)
    await comm.send_to(text_data=json.dumps({"type": "retry", "reply": failed.pk}))
    got = await receive_until(comm, f'{DONE}"complete"', timeout=30)
    await comm.disconnect()
    assert f'<div id="{dom.element_id(failed.pk)}" hx-swap-oob="delete"></div>' in got[0]
    replies = await database_sync_to_async(
        lambda: list(Message.objects.filter(role="assistant").order_by("id"))
    )()
    assert [(r.status, r.superseded) for r in replies] == [("failed", True), ("complete", False)]
    page = await database_sync_to_async(
        lambda: client_for(alice).get(f"/c/{failed.conversation_id}/").content.decode()
    )()
    assert f'id="{dom.element_id(failed.pk)}"' not in page
    assert f'id="{dom.element_id(replies[1].pk)}"' in page


# --- the page's figures ---------------------------------------------------------------------
async def test_the_turns_end_brings_the_context_gauge_and_the_cost_hint(alice, alice_cookie):
    got = await one_turn(alice_cookie, "Hello [sim:tokens=30]", "complete")
    final = got[-1]
    gauge = re.search(r'<span id="context-gauge"[^>]*>', final)
    assert gauge is not None and "hidden" not in gauge.group(0)
    assert "hx-swap-oob" in gauge.group(0) and "&lt;1% of 128,000 tokens" in final
    conversation = await database_sync_to_async(Conversation.objects.get)(owner=alice)
    expected = await database_sync_to_async(figures.history_tokens)(conversation)
    assert expected > 0
    assert f'<data id="estimate-history" value="{expected}" hidden hx-swap-oob="true">' in final


def test_the_page_counts_the_history_as_the_server_reserves_it(alice):
    conversation = Conversation.objects.create(
        owner=alice, model="claude-4-6", system_prompt="Answer in one line.", max_output_tokens=60
    )
    for question, answer in [("What is 2+2?", "4."), ("And 3+3?", "6, of course.")]:
        asked = Message.objects.create(conversation=conversation, role="user", content=question)
        Message.objects.create(
            conversation=conversation, role="assistant", content=answer, reply_to=asked
        )
    # A question refused for want of budget is not sent again with the next one.
    unanswered = Message.objects.create(conversation=conversation, role="user", content="Hm " * 9)
    Message.objects.create(
        conversation=conversation, role="assistant", status="failed", reply_to=unanswered
    )
    shown = figures.history_tokens(conversation)
    text = "Now tell me about the weather in Lyon, please."
    turn = turns.turn_start(user=alice, conversation=conversation, text=text, client_id="h1")
    reservation = Reservation.objects.get(pk=turn.reply.reservation_id)
    assert reservation.input_tokens_estimate == shown + context_tokens(text)
    assert reservation.max_tokens == 60


# --- the review: paused only when it is true, told to every page ---------------------------------
def test_money_held_by_a_reply_being_written_pauses_nothing_and_the_bar_is_what_was_spent(alice):
    DailySpend.objects.create(
        scope=f"user:{alice.pk}",
        day=meter.today(),
        user=alice,
        spent_micros=1_000_000,
        reserved_micros=4_000_000,  # another tab's reply holds the rest of the $5.00
    )
    spend = figures.spend_for(alice)
    assert not spend.paused and spend.paused_text == "" and spend.left_micros == 0
    assert spend.percent == 20  # $1.00 of $5.00 spent; what is held is not spent
    assert spend.short_text == (
        "Replies still being written hold $4.00 of today's budget: send when they finish."
    )
    page = client_for(alice).get("/").content.decode()
    assert 'data-paused="false"' in page and "spend-meter--paused" not in page
    assert "Your daily budget is used up" not in page and 'value="20"' in page


def test_a_refusal_for_money_held_says_so_offers_retry_and_pauses_nothing(alice):
    day = meter.today()
    DailySpend.objects.create(
        scope=f"user:{alice.pk}", day=day, user=alice, spent_micros=0, reserved_micros=4_999_990
    )
    model = catalog_model("claude-4-6")
    with pytest.raises(meter.Refused) as refused:
        meter.reserve(user=alice, model=model, input_tokens=10, max_tokens=4096)
    assert refused.value.scope == "user" and refused.value.figures["held"] == 4_999_990
    assert refused.value.message == (
        "Replies still being written hold $4.99999 of today's budget. Try again when they finish."
    )
    conversation = Conversation.objects.create(owner=alice, model="claude-4-6")
    asked = Message.objects.create(conversation=conversation, role="user", content="Hi")
    reply = Message.objects.create(
        conversation=conversation,
        role="assistant",
        reply_to=asked,
        status="failed",
        error_kind="budget_user",
        notice_figures=refused.value.figures,
    )
    assert reply.offer == "retry" and reply.error_text == refused.value.message
    assert not figures.spend_for(alice).paused


def test_the_service_limit_pauses_in_its_own_words(alice, settings):
    settings.DAILY_CAP_MICROS = 50_000_000
    DailySpend.objects.create(scope=DailySpend.SERVICE, day=meter.today(), spent_micros=50_000_000)
    spend = figures.spend_for(alice)
    assert spend.paused_scope == "service" and spend.percent == 0
    assert spend.paused_text.startswith(
        "The service has reached today's spending limit: sending is paused until 00:00 UTC (in"
    )
    # A refusal recorded by the user's budget says it is theirs.
    conversation = Conversation.objects.create(owner=alice, model="claude-4-6")
    Message.objects.create(
        conversation=conversation, role="assistant", status="failed", error_kind="budget_user"
    )
    DailySpend.objects.filter(scope=DailySpend.SERVICE).update(spent_micros=0)
    spend = figures.spend_for(alice)
    assert spend.paused_scope == "user"
    assert spend.paused_text.startswith("Your daily budget is used up: sending is paused until")


async def test_every_page_of_the_person_is_told_the_new_spend(alice, alice_cookie):
    """A turn in one tab: the person's other tabs (another conversation, or none) get the
    spend meter (here paused by a refusal) without a reload; the tab of the turn gets it
    once, with the turn's own frame."""
    other = communicator(alice_cookie)
    await other.connect()
    await database_sync_to_async(UserBudget.objects.create)(user=alice, daily_cap_micros=10)
    sender = communicator(alice_cookie)
    await sender.connect()
    await sender.send_to(text_data=send_frame("Hi", "m1"))
    got = await receive_until(sender, f'{DONE}"failed"', timeout=30)
    assert sum('id="spend-meter"' in frame for frame in got) == 1
    shown = await receive_until(other, 'id="spend-meter"', timeout=10)
    assert 'data-paused="true"' in shown[-1]
    assert "Your daily budget is used up: sending is paused until 00:00 UTC" in shown[-1]
    assert await sender.receive_nothing(timeout=0.3)
    # A turn that settles (money spent) is told to the other page too.
    await database_sync_to_async(UserBudget.objects.filter(user=alice).update)(
        daily_cap_micros=5_000_000
    )
    await sender.send_to(text_data=send_frame("Again [sim:tokens=5]", "m2"))
    await receive_until(sender, f'{DONE}"complete"', timeout=30)
    shown = await receive_until(other, 'id="spend-meter"', timeout=10)
    assert 'data-paused="false"' in shown[-1] and "$0.00 of" not in shown[-1]
    await sender.disconnect()
    await other.disconnect()


# --- the review: one history_tokens ---------------------------------------------------------
def test_the_context_gauge_counts_what_the_cost_hint_counts(alice):
    conversation = Conversation.objects.create(owner=alice, model="claude-4-6")
    asked = Message.objects.create(conversation=conversation, role="user", content="Hi " * 50)
    Message.objects.create(
        conversation=conversation, role="assistant", content="Hello", reply_to=asked
    )
    # A question left without an answer (a refusal) is not sent again: neither counts it.
    Message.objects.create(conversation=conversation, role="user", content="word " * 5_000)
    gauge = figures.context_gauge(conversation)
    assert gauge is not None
    assert gauge["used"] == figures.history_tokens(conversation) < 1_000
    from conversations import selectors

    assert not hasattr(selectors, "history_tokens")


# --- the review: the usage page's left is the meter's -----------------------------------------
def test_the_usage_page_says_what_the_meter_says_is_left(alice, settings):
    day = meter.today()
    DailySpend.objects.create(
        scope=f"user:{alice.pk}",
        day=day,
        user=alice,
        spent_micros=1_500_000,
        reserved_micros=1_000_000,
    )
    page = client_for(alice).get("/usage/").content.decode()
    assert "$2.50 left today" in page  # $5.00 less $1.50 spent and $1.00 held
    settings.DAILY_CAP_MICROS = 2_000_000
    DailySpend.objects.create(scope=DailySpend.SERVICE, day=day, spent_micros=1_900_000)
    page = client_for(alice).get("/usage/").content.decode()
    assert "$0.10 left today" in page  # the service's limit leaves less


# --- the review: Continue's budget read once per message shown -------------------------------
def test_a_shortened_reply_reads_the_budget_once_however_often_it_is_asked(
    alice, django_assert_num_queries
):
    conversation = Conversation.objects.create(owner=alice, model="claude-4-6")
    asked = Message.objects.create(conversation=conversation, role="user", content="Hi")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        reply_to=asked,
        content="Part",
        status="cut_off",
        input_tokens=10,
        output_tokens=5,
        notice_figures={"shortened_to": 5},
        model="claude-4-6",
    )
    reply = Message.objects.filter(role="assistant").get()
    with CaptureQueriesContext(connection) as first:
        assert reply.offer == "continue"
    assert any("dailyspend" in query["sql"] for query in first.captured_queries)
    # can_regenerate asks offer again: only the catalog's row is read again, not the budget.
    with django_assert_num_queries(1):
        assert reply.can_regenerate


# --- the review: 0009 rolls back to words -----------------------------------------------------
def test_rolling_back_0009_writes_the_notices_again_from_the_figures(transactional_db):
    user = django_user().objects.create(username="old")
    conversation = Conversation.objects.create(owner=user, model="claude-4-6")
    reset = meter.resets_at(meter.today())
    refused = Message.objects.create(
        conversation=conversation,
        role="assistant",
        error_kind="budget_user",
        notice_figures={"spent": 1_800, "cap": 2_000, "resets_at": reset.isoformat()},
    )
    plain = Message.objects.create(conversation=conversation, role="assistant", content="Hi")
    executor = MigrationExecutor(connection)
    before = [("conversations", "0008_message_context_tokens")]
    with translation.override("fr"):  # the words are the default language's, not the active one
        executor.migrate(before)
    old = executor.loader.project_state(before).apps.get_model("conversations", "Message")
    notice = old.objects.get(pk=refused.pk).notice
    assert notice.startswith("You've used $0.0018 of your $0.002 daily budget. It resets at 00:00")
    assert old.objects.get(pk=plain.pk).notice == ""
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    again = Message.objects.get(pk=refused.pk)
    assert again.notice_figures["spent"] == 1_800 and again.notice_figures["cap"] == 2_000


def test_the_admin_guards_only_text_fields_that_exist():
    from support.conversation_admin import TEXT_FIELDS

    names = {f.name for model in (Conversation, Message) for f in model._meta.get_fields()}
    assert TEXT_FIELDS <= names


def catalog_model(slug: str):  # type: ignore[no-untyped-def]
    from billing import catalog

    model = catalog.get_model(slug)
    assert model is not None
    return model


def django_user():  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    return get_user_model()
