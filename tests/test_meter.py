"""The meter's arithmetic and invariants: reserve before the call, settle exactly once."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.contrib.auth import get_user_model
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from billing import meter
from billing.models import CatalogModel, DailySpend, Reservation, UsageRecord, UserBudget

CLAUDE = dict(input_price_per_1k_micros=1000, output_price_per_1k_micros=2000)


def claude() -> CatalogModel:
    return CatalogModel.objects.get(slug="claude-4-6")


def rows(user) -> tuple[DailySpend, DailySpend]:
    day = meter.today()
    return (
        DailySpend.objects.get(scope=f"user:{user.pk}", day=day),
        DailySpend.objects.get(scope="service", day=day),
    )


# --- arithmetic ---------------------------------------------------------------------------
def test_claude_tokens_cost_one_and_two_micro_dollars():
    assert meter.cost_micros(1, 0, 1000, 2000) == 1
    assert meter.cost_micros(0, 1, 1000, 2000) == 2
    assert meter.cost_micros(1000, 500, 1000, 2000) == 2000  # $0.001 + $0.001


@given(st.integers(0, 10**6), st.integers(0, 10**5), st.integers(0, 10**6), st.integers(0, 10**6))
def test_cost_is_never_below_the_exact_price_and_under_a_micro_dollar_above(i, o, pi, po):
    exact_times_1000 = i * pi + o * po
    cost = meter.cost_micros(i, o, pi, po)
    assert cost * 1000 >= exact_times_1000 > (cost - 1) * 1000 or exact_times_1000 == cost == 0


@given(st.integers(0, 10**5), st.integers(0, 10**5), st.integers(0, 10**5))
def test_cost_grows_with_tokens(i, o, extra):
    assert meter.cost_micros(i + extra, o, 1000, 2000) >= meter.cost_micros(i, o, 1000, 2000)
    assert meter.cost_micros(i, o + extra, 1000, 2000) >= meter.cost_micros(i, o, 1000, 2000)


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "$0.00"),
        (1_200, "$0.0012"),
        (420_000, "$0.42"),
        (5_000_000, "$5.00"),
        (100_000_000, "$100.00"),
        (9_999, "$0.009999"),
        (29, "$0.000029"),
        (12_345_678, "$12.345678"),
        (10_000, "$0.01"),
        (10_118, "$0.010118"),
        (2_000, "$0.002"),
    ],
)
def test_money_is_shown_in_dollars_to_the_micro_dollar(micros, text):
    # Step 10: one rule for every amount, exact (a total reads as the sum of its rows).
    assert meter.format_usd(micros) == text


# --- reserve and settle -------------------------------------------------------------------
def test_a_turn_reserves_its_worst_case_and_is_charged_what_it_used(alice):
    grant = meter.reserve(user=alice, model=claude(), input_tokens=100, max_tokens=4096)
    assert grant.amount_micros == 100 + 2 * 4096 and grant.max_tokens == 4096
    user_row, service_row = rows(alice)
    assert user_row.reserved_micros == service_row.reserved_micros == grant.amount_micros

    attempt = meter.Attempt(input_tokens=90, output_tokens=50, outcome="complete")
    assert meter.settle(reservation_id=grant.reservation_id, attempts=[attempt]) == 190
    user_row, service_row = rows(alice)
    assert (user_row.spent_micros, user_row.reserved_micros) == (190, 0)
    assert (service_row.spent_micros, service_row.reserved_micros) == (190, 0)
    (record,) = UsageRecord.objects.all()
    assert (record.input_tokens, record.output_tokens, record.charged_micros) == (90, 50, 190)


def test_a_turn_is_settled_exactly_once(alice):
    grant = meter.reserve(user=alice, model=claude(), input_tokens=10, max_tokens=10)
    attempt = meter.Attempt(input_tokens=10, output_tokens=10, outcome="complete")
    assert meter.settle(reservation_id=grant.reservation_id, attempts=[attempt]) == 30
    assert meter.settle(reservation_id=grant.reservation_id, attempts=[attempt]) is None
    assert rows(alice)[0].spent_micros == 30
    assert UsageRecord.objects.count() == 1


def test_a_budget_too_small_for_a_full_reply_shortens_it(alice, settings):
    settings.MIN_USEFUL_OUTPUT_TOKENS = 256
    UserBudget.objects.create(user=alice, daily_cap_micros=1_000)
    grant = meter.reserve(user=alice, model=claude(), input_tokens=100, max_tokens=4096)
    assert grant.max_tokens == (1_000 - 100) // 2 == 450
    assert grant.amount_micros == 1_000


def test_a_budget_too_small_for_a_useful_reply_is_refused_in_words(alice, settings):
    settings.MIN_USEFUL_OUTPUT_TOKENS = 256
    UserBudget.objects.create(user=alice, daily_cap_micros=5_000_000)
    DailySpend.objects.create(
        scope=f"user:{alice.pk}", user=alice, day=meter.today(), spent_micros=4_980_000
    )
    # $0.02 left: the input takes $0.0196, leaving room for 200 tokens of reply (< 256).
    with pytest.raises(meter.Refused) as refused:
        meter.reserve(user=alice, model=claude(), input_tokens=19_600, max_tokens=4096)
    words = refused.value.message
    assert words.startswith("You've used $4.98 of your $5.00 daily budget. It resets at 00:00 UTC")
    assert " h " in words or " min)" in words
    assert refused.value.scope == "user"
    assert DailySpend.objects.get(scope=f"user:{alice.pk}").reserved_micros == 0


def test_the_service_cap_has_its_own_words(alice, settings):
    settings.DAILY_CAP_MICROS = 100_000_000
    DailySpend.objects.create(scope="service", day=meter.today(), spent_micros=99_999_900)
    with pytest.raises(meter.Refused) as refused:
        meter.reserve(user=alice, model=claude(), input_tokens=100, max_tokens=4096)
    assert refused.value.scope == "service"
    assert "The service has reached today's spending limit of $100.00" in refused.value.message


@pytest.mark.parametrize("prices", [(None, 2000), (1000, None), (-1, 2000), (1000, -2)])
def test_a_model_without_a_sane_price_fails_closed(alice, prices):
    model = claude()
    model.input_price_per_1k_micros, model.output_price_per_1k_micros = prices
    with pytest.raises(meter.Refused) as refused:
        meter.reserve(user=alice, model=model, input_tokens=1, max_tokens=1)
    assert refused.value.scope == "price"
    assert not Reservation.objects.exists()


def test_a_turn_that_straddles_midnight_is_charged_to_the_day_it_started(alice, monkeypatch):
    yesterday = meter.today() - timedelta(days=1)
    monkeypatch.setattr(meter, "today", lambda now=None: yesterday)
    grant = meter.reserve(user=alice, model=claude(), input_tokens=10, max_tokens=100)
    monkeypatch.undo()  # midnight passes while the reply streams
    meter.settle(
        reservation_id=grant.reservation_id,
        attempts=[meter.Attempt(input_tokens=10, output_tokens=100, outcome="complete")],
    )
    started = DailySpend.objects.get(scope=f"user:{alice.pk}", day=yesterday)
    assert (started.spent_micros, started.reserved_micros) == (210, 0)
    assert not DailySpend.objects.filter(day=meter.today()).exists()
    assert UsageRecord.objects.get().day == yesterday


def test_a_free_model_is_never_refused_for_money(alice):
    UserBudget.objects.create(user=alice, daily_cap_micros=0)
    local = CatalogModel.objects.get(slug="smollm2-135m")
    grant = meter.reserve(user=alice, model=local, input_tokens=50, max_tokens=2048)
    assert grant.amount_micros == 0 and grant.max_tokens == 2048


# --- invariants under any sequence -------------------------------------------------------
operations = st.lists(
    st.tuples(
        st.sampled_from(["alice", "bob"]),
        st.integers(0, 3000),  # input tokens
        st.integers(1, 4096),  # max tokens
        st.floats(0, 1.2),  # share of max tokens really used (over 1: more input than thought)
        st.booleans(),  # settle now, or leave held until the end
    ),
    max_size=25,
)


@hsettings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=operations,
    user_cap=st.integers(0, 50_000),
    service_cap=st.integers(0, 80_000),
    min_useful=st.integers(1, 512),
)
def test_spent_plus_reserved_never_exceeds_a_cap_and_the_ledger_adds_up(
    settings, ops, user_cap, service_cap, min_useful
):
    DailySpend.objects.all().delete()
    UsageRecord.objects.all().delete()
    Reservation.objects.all().delete()
    settings.USER_DAILY_CAP_MICROS = user_cap
    settings.DAILY_CAP_MICROS = service_cap
    settings.MIN_USEFUL_OUTPUT_TOKENS = min_useful
    User = get_user_model()
    people = {n: User.objects.get_or_create(username=n)[0] for n in ("alice", "bob")}
    model = claude()
    held: list[tuple[meter.Grant, int, int]] = []

    def check() -> None:
        for row in DailySpend.objects.all():
            cap = service_cap if row.scope == "service" else user_cap
            assert row.spent_micros >= 0 and row.reserved_micros >= 0
            assert row.spent_micros + row.reserved_micros <= cap

    for name, input_tokens, max_tokens, used, settle_now in ops:
        try:
            grant = meter.reserve(
                user=people[name], model=model, input_tokens=input_tokens, max_tokens=max_tokens
            )
        except meter.Refused:
            check()
            continue
        assert grant.amount_micros <= min(user_cap, service_cap)
        real_input = round(input_tokens * max(1.0, used))
        real_output = min(grant.max_tokens, round(grant.max_tokens * min(used, 1.0)))
        if settle_now:
            meter.settle(
                reservation_id=grant.reservation_id,
                attempts=[meter.Attempt(real_input, real_output, "complete")],
            )
        else:
            held.append((grant, real_input, real_output))
        check()
    for grant, real_input, real_output in held:
        meter.settle(
            reservation_id=grant.reservation_id,
            attempts=[meter.Attempt(real_input, real_output, "stopped")],
        )
        check()
    day = meter.today()
    for person in people.values():
        row = DailySpend.objects.filter(scope=f"user:{person.pk}", day=day).first()
        spent = row.spent_micros if row else 0
        assert (row.reserved_micros if row else 0) == 0
        assert meter.ledger_total(day, user=person) == spent
    service = DailySpend.objects.filter(scope="service", day=day).first()
    assert meter.ledger_total(day) == (service.spent_micros if service else 0)


def release_unused(reservation_id: int) -> int | None:
    """Settle a turn that never reached the upstream: nothing is charged."""
    return meter.settle(
        reservation_id=reservation_id,
        attempts=[meter.Attempt(input_tokens=0, output_tokens=0, outcome="failed")],
    )


def test_a_reservation_for_an_unknown_day_row_is_not_settled_twice_by_recovery(alice):
    grant = meter.reserve(user=alice, model=claude(), input_tokens=5, max_tokens=5)
    assert release_unused(grant.reservation_id) == 0
    assert release_unused(grant.reservation_id) is None
    assert rows(alice)[0].reserved_micros == 0


def test_days_are_dates_in_the_billing_time_zone(settings):
    from datetime import UTC, datetime

    settings.BILLING_TIMEZONE = "Asia/Tokyo"
    late_utc = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)  # 05:00 on the 26th in Tokyo
    assert meter.today(late_utc) == date(2026, 11, 26)
    assert meter.resets_at(date(2026, 11, 26)).isoformat() == "2026-11-27T00:00:00+09:00"
