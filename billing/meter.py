"""The meter: reserve the most a turn can cost before any upstream call, settle it once.

Per user and day, and for the service per day, `spent + reserved <= cap` always holds.
Each reservation and each settlement is one transaction that locks the day's rows in one
fixed order (the user's, then the service's) and changes them with conditional UPDATEs
(`... WHERE spent + reserved + amount <= cap`), so concurrent turns in any number of
processes can never overspend: on PostgreSQL the row locks serialise them, on SQLite the
IMMEDIATE transactions do. Without the fixed order two turns could deadlock.
"""

from __future__ import annotations

import math
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone
from django.utils.formats import get_format, number_format
from django.utils.translation import gettext as _

from .models import (
    CatalogModel,
    DailySpend,
    Reservation,
    ServiceSettings,
    UsageRecord,
    UserBudget,
)


# --- money and days ----------------------------------------------------------------------
def cost_micros(
    input_tokens: int, output_tokens: int, input_per_1k: int, output_per_1k: int
) -> int:
    """What tokens cost at per-1k prices, in whole micro-dollars, rounded up."""
    return math.ceil((input_tokens * input_per_1k + output_tokens * output_per_1k) / 1000)


def format_usd(micros: int) -> str:
    """Dollars for people, one rule for every amount: the exact micro-dollars, trailing
    zeros trimmed, never fewer than two decimals ($0.000226, $0.002, $0.010118, $5.00,
    $1,234.50), so a total reads as the sum of its rows and a small cost never as zero.
    Written in the active language's number format and pattern (French: 0,010118 $).
    chat.js (formatUsd) applies the same rule with the pieces `money_format` gives it."""
    whole, fraction = divmod(abs(micros), 1_000_000)
    digits = f"{fraction:06d}".rstrip("0").ljust(2, "0")
    amount = number_format(
        Decimal(f"{whole}.{digits}"), decimal_pos=len(digits), force_grouping=True
    )
    return ("-" if micros < 0 else "") + _("$%(amount)s") % {"amount": amount}


def money_format() -> dict[str, str]:
    """What a page's script needs to write money as format_usd does, in the active
    language: the pattern (with `{amount}`), the decimal and thousands separators."""
    return {
        "pattern": _("$%(amount)s") % {"amount": "{amount}"},
        "decimal": str(get_format("DECIMAL_SEPARATOR")),
        "thousands": str(get_format("THOUSAND_SEPARATOR")),
    }


def billing_zone() -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(settings.BILLING_TIMEZONE)


def today(now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(billing_zone()).date()


def resets_at(day: date) -> datetime:
    """When `day`'s budget resets: midnight at its end, in the billing time zone."""
    return datetime.combine(day + timedelta(days=1), time.min, billing_zone())


def _in_words(delta: timedelta) -> str:
    minutes = max(0, math.ceil(delta.total_seconds() / 60))
    hours, minutes = divmod(minutes, 60)
    if hours:
        return _("%(hours)s h %(minutes)s min") % {"hours": hours, "minutes": minutes}
    return _("%(minutes)s min") % {"minutes": minutes}


def reset_words(reset: datetime, now: datetime | None = None) -> str:
    """When a budget resets, for people, in the active language: "00:00 UTC (in 5 h 12 min)"."""
    reset = reset.astimezone(billing_zone())
    return _("%(time)s %(zone)s (in %(wait)s)") % {
        "time": f"{reset:%H:%M}",
        "zone": reset.tzname(),
        "wait": _in_words(reset - (now or timezone.now())),
    }


# --- caps --------------------------------------------------------------------------------
def user_cap_micros(user: User | None) -> int:
    """A user's daily cap: their override, else the service's default (None: the default)."""
    override = (
        UserBudget.objects.filter(user=user).values_list("daily_cap_micros", flat=True).first()
        if user is not None
        else None
    )
    if override is not None:
        return override
    default = ServiceSettings.objects.values_list("default_user_cap_micros", flat=True).first()
    return settings.USER_DAILY_CAP_MICROS if default is None else default


def service_cap_micros() -> int:
    """The service's cap for the day: the admin's, never above DAILY_CAP_USD."""
    chosen = ServiceSettings.objects.values_list("service_cap_micros", flat=True).first()
    ceiling = settings.DAILY_CAP_MICROS
    return ceiling if chosen is None else min(chosen, ceiling)


def _scope(user: User) -> str:
    return f"user:{user.pk}"


def _row(scope: str, day: date, user: User | None) -> DailySpend:
    """The day's row for a scope, created if missing (a racing creator is fine)."""
    try:
        row, _ = DailySpend.objects.get_or_create(scope=scope, day=day, defaults={"user": user})
    except IntegrityError:
        row = DailySpend.objects.get(scope=scope, day=day)
    return row


# --- reserve -----------------------------------------------------------------------------
class Refused(Exception):
    """No budget for this turn. `message` is what the user reads now (in the active
    language); `figures` are what it says, kept so the words can be written again later in
    another language (`refusal_words`)."""

    def __init__(self, message: str, *, scope: str, figures: dict[str, object] | None = None):
        super().__init__(message)
        self.message = message
        self.scope = scope  # "user", "service" or "price"
        self.figures = figures or {}


@dataclass(frozen=True)
class Grant:
    reservation_id: int
    amount_micros: int
    max_tokens: int  # possibly lowered to fit the budget left


def refusal_words(scope: str, figures: dict[str, object], now: datetime | None = None) -> str:
    """What a budget refusal says, from its figures (micro-dollars, the reset as ISO text;
    `held`: refused only for money replies still being written hold), in the active
    language; "" when the figures are missing (the catalog's words then)."""
    try:
        reset = datetime.fromisoformat(str(figures["resets_at"]))
        cap = int(figures["cap"])  # type: ignore[call-overload]
        spent = int(figures.get("spent", 0))  # type: ignore[call-overload]
        held = int(figures.get("held", 0))  # type: ignore[call-overload]
    except (KeyError, TypeError, ValueError):
        return ""
    if held:
        return _(
            "Replies still being written hold %(held)s of today's budget. Try again when "
            "they finish."
        ) % {"held": format_usd(held)}
    if reset <= (now or timezone.now()):
        if scope == "user":
            return _(
                "You had used %(spent)s of your %(cap)s daily budget. It has reset since: "
                "you can send again."
            ) % {"spent": format_usd(spent), "cap": format_usd(cap)}
        return _(
            "The service had reached that day's spending limit of %(cap)s. It has reset "
            "since: you can send again."
        ) % {"cap": format_usd(cap)}
    when = reset_words(reset, now)
    if scope == "user":
        return _("You've used %(spent)s of your %(cap)s daily budget. It resets at %(when)s.") % {
            "spent": format_usd(spent),
            "cap": format_usd(cap),
            "when": when,
        }
    return _(
        "The service has reached today's spending limit of %(cap)s. It resets at %(when)s."
    ) % {"cap": format_usd(cap), "when": when}


def _refusal(scope: str, spent: int, cap: int, day: date, *, held: int = 0) -> Refused:
    figures: dict[str, object] = {
        "spent": spent,
        "cap": cap,
        "resets_at": resets_at(day).isoformat(),
    }
    if held:
        figures["held"] = held
    return Refused(refusal_words(scope, figures), scope=scope, figures=figures)


def _prices(model: CatalogModel) -> tuple[int, int]:
    """The model's per-1k input and output prices; `Refused` when either is missing or
    negative. Fail closed: a model without a sane price is never called."""
    price_in, price_out = model.input_price_per_1k_micros, model.output_price_per_1k_micros
    if price_in is None or price_out is None or price_in < 0 or price_out < 0:
        raise Refused(
            _(
                "This model has no valid price yet, so it cannot be used. An administrator "
                "has been notified."
            ),
            scope="price",
        )
    return price_in, price_out


@dataclass(frozen=True)
class _LockedDay:
    """The day's two rows, the user's and the service's, locked for this transaction, with
    the caps they are held to: what reserving reads to decide what fits."""

    day: date
    user_row: DailySpend
    service_row: DailySpend
    user_cap: int
    service_cap: int

    @property
    def user_left(self) -> int:
        return self.user_cap - self.user_row.spent_micros - self.user_row.reserved_micros

    @property
    def service_left(self) -> int:
        return self.service_cap - self.service_row.spent_micros - self.service_row.reserved_micros


def _lock_day(user: User, day: date, user_cap: int, service_cap: int) -> _LockedDay:
    """Create the day's rows if missing, then lock them. Always the user's row first, then
    the service's: one order, no deadlock. Call inside the reserving transaction."""
    user_row = _row(_scope(user), day, user)
    service_row = _row(DailySpend.SERVICE, day, None)
    user_row = DailySpend.objects.select_for_update().get(pk=user_row.pk)
    service_row = DailySpend.objects.select_for_update().get(pk=service_row.pk)
    return _LockedDay(day, user_row, service_row, user_cap, service_cap)


def _fit(
    locked: _LockedDay, *, input_tokens: int, max_tokens: int, price_in: int, price_out: int
) -> tuple[int, int]:
    """The reply's token limit and the amount to hold for it: `max_tokens` when the money
    left pays for that; else shortened to what it pays for, if that is at least
    MIN_USEFUL_OUTPUT_TOKENS (or `max_tokens`, if smaller); else `Refused`."""
    user_left, service_left = locked.user_left, locked.service_left
    left = min(user_left, service_left)
    amount = cost_micros(input_tokens, max_tokens, price_in, price_out)
    if amount <= left:
        return max_tokens, amount
    affordable = (left * 1000 - input_tokens * price_in) // price_out if price_out else max_tokens
    tokens = min(max_tokens, affordable)
    least = min(settings.MIN_USEFUL_OUTPUT_TOKENS, max_tokens)
    if tokens < least:
        raise _refusal_for_want(
            locked, least_micros=cost_micros(input_tokens, least, price_in, price_out)
        )
    return tokens, cost_micros(input_tokens, tokens, price_in, price_out)


def _refusal_for_want(locked: _LockedDay, *, least_micros: int) -> Refused:
    """The refusal when even the shortest useful reply does not fit, in the words of the
    budget that binds (the user's when both are equally short). Money held by replies still
    being written comes back when they settle: a refusal for want of it says so, and
    pauses nothing."""
    user_left, service_left = locked.user_left, locked.service_left
    if user_left <= service_left:
        scope, binding, cap = "user", locked.user_row, locked.user_cap
    else:
        scope, binding, cap = "service", locked.service_row, locked.service_cap
    unheld = min(
        user_left + locked.user_row.reserved_micros,
        service_left + locked.service_row.reserved_micros,
    )
    held = binding.reserved_micros
    if held and least_micros <= unheld:
        return _refusal(scope, binding.spent_micros, cap, locked.day, held=held)
    return _refusal(scope, binding.spent_micros, cap, locked.day)


def _hold(locked: _LockedDay, amount: int) -> None:
    """Add `amount` to both rows' reserved money, each by one conditional UPDATE that
    matches only while `spent + reserved + amount <= cap` still holds."""
    rows = (
        ("user", locked.user_row, locked.user_cap),
        ("service", locked.service_row, locked.service_cap),
    )
    for scope, row, cap in rows:
        held = DailySpend.objects.filter(
            pk=row.pk, spent_micros__lte=cap - amount - F("reserved_micros")
        ).update(reserved_micros=F("reserved_micros") + amount)
        if held != 1:  # Cannot happen under the row lock; refuse rather than overspend.
            raise _refusal(scope, row.spent_micros, cap, locked.day)


def reserve(
    *,
    user: User,
    model: CatalogModel,
    input_tokens: int,
    max_tokens: int,
    conversation_id: UUID | None = None,
    message_id: int | None = None,
) -> Grant:
    """Hold the most this turn can cost against the user's and the service's day.

    If the money left cannot pay for `max_tokens` of reply but can pay for the input and
    MIN_USEFUL_OUTPUT_TOKENS, the reply is shortened to fit; otherwise `Refused`.
    """
    price_in, price_out = _prices(model)
    day = today()
    user_cap, service_cap = user_cap_micros(user), service_cap_micros()
    with transaction.atomic():
        locked = _lock_day(user, day, user_cap, service_cap)
        tokens, amount = _fit(
            locked,
            input_tokens=input_tokens,
            max_tokens=max_tokens,
            price_in=price_in,
            price_out=price_out,
        )
        _hold(locked, amount)
        reservation = Reservation.objects.create(
            user=user,
            day=day,
            model=model.slug,
            input_price_per_1k_micros=price_in,
            output_price_per_1k_micros=price_out,
            input_tokens_estimate=input_tokens,
            max_tokens=tokens,
            amount_micros=amount,
            conversation_id=conversation_id,
            message_id=message_id,
        )
    return Grant(reservation_id=reservation.pk, amount_micros=amount, max_tokens=tokens)


# --- settle ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Attempt:
    """One upstream request of a turn, as it went."""

    input_tokens: int
    output_tokens: int
    outcome: str
    error_kind: str = ""
    error_detail: str = ""
    upstream_request_id: str = ""
    ttft_ms: int | None = None
    duration_ms: int | None = None
    retries: int = 0


def settle(*, reservation_id: int, attempts: list[Attempt]) -> int | None:
    """Release the reservation and charge what the attempts cost. Exactly once: a second
    call for the same reservation changes nothing and returns None; else what was charged.

    The charge never takes a day past its cap: the rare excess over the reservation (an
    input larger than estimated) is charged only as far as the caps allow.
    """
    with transaction.atomic():
        # The claim is the exactly-once: only the call that turns HELD into SETTLED goes on.
        claimed = Reservation.objects.filter(
            pk=reservation_id, state=Reservation.State.HELD
        ).update(state=Reservation.State.SETTLED, settled_at=timezone.now())
        if not claimed:
            return None
        reservation = Reservation.objects.select_related("user").get(pk=reservation_id)
        costs = [
            cost_micros(
                a.input_tokens,
                a.output_tokens,
                reservation.input_price_per_1k_micros,
                reservation.output_price_per_1k_micros,
            )
            for a in attempts
        ]
        charged_total = _release_and_charge(reservation, sum(costs))
        UsageRecord.objects.bulk_create(_usage_records(reservation, attempts, costs, charged_total))
        Reservation.objects.filter(pk=reservation_id).update(charged_micros=charged_total)
    return charged_total


def _release_and_charge(reservation: Reservation, cost: int) -> int:
    """Lock the reservation's day rows (the user's, then the service's: the order reserving
    uses), give back what it held and charge `cost`, as far as the caps allow. Returns what
    was charged. Call inside the settling transaction."""
    user = reservation.user
    user_row = DailySpend.objects.select_for_update().get(scope=_scope(user), day=reservation.day)
    service_row = DailySpend.objects.select_for_update().get(
        scope=DailySpend.SERVICE, day=reservation.day
    )
    amount = reservation.amount_micros
    room = min(
        user_cap_micros(user) - user_row.spent_micros - user_row.reserved_micros + amount,
        service_cap_micros() - service_row.spent_micros - service_row.reserved_micros + amount,
    )
    charged_total = max(0, min(cost, room))
    for row in (user_row, service_row):
        DailySpend.objects.filter(pk=row.pk).update(
            reserved_micros=F("reserved_micros") - amount,
            spent_micros=F("spent_micros") + charged_total,
        )
    return charged_total


def _usage_records(
    reservation: Reservation, attempts: list[Attempt], costs: list[int], charged_total: int
) -> list[UsageRecord]:
    """One usage record an attempt, for the ledger. What was charged is spread over the
    attempts in order, so the records of a day add up to its spend even when the caps cut
    the charge short."""
    remaining = charged_total
    records = []
    for attempt, cost in zip(attempts, costs, strict=True):
        charged = min(cost, remaining)
        remaining -= charged
        records.append(
            UsageRecord(
                reservation=reservation,
                user=reservation.user,
                day=reservation.day,
                conversation_id=reservation.conversation_id,
                message_id=reservation.message_id,
                model=reservation.model,
                input_tokens=attempt.input_tokens,
                output_tokens=attempt.output_tokens,
                cost_micros=cost,
                charged_micros=charged,
                outcome=attempt.outcome,
                error_kind=attempt.error_kind,
                error_detail=attempt.error_detail,
                upstream_request_id=attempt.upstream_request_id,
                ttft_ms=attempt.ttft_ms,
                duration_ms=attempt.duration_ms,
                retries=attempt.retries,
            )
        )
    return records


# --- reads -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spend:
    """A user's day, for the spend meter and the page's cost hint."""

    spent_micros: int
    cap_micros: int
    left_micros: int = 0  # what a turn may still reserve (the user's and the service's)
    resets_at: datetime | None = None
    # Why sending with a paid model waits for the reset: "user" (their budget) or "service"
    # (the service's daily limit); "" when it need not. Only a spent budget or a recorded
    # refusal pauses: money merely held by a reply still being written comes back when it
    # settles, so it never does.
    paused_scope: str = ""
    held_micros: int = 0  # held by replies still being written, of the budget that binds

    @property
    def paused(self) -> bool:
        return bool(self.paused_scope)

    @property
    def text(self) -> str:
        return _("%(spent)s of %(cap)s today") % {
            "spent": format_usd(self.spent_micros),
            "cap": format_usd(self.cap_micros),
        }

    @property
    def percent(self) -> int:
        """How much of the person's budget is spent (what is held is not spent yet)."""
        if self.cap_micros <= 0:
            return 100
        return min(100, math.floor(self.spent_micros * 100 / self.cap_micros))

    @property
    def paused_text(self) -> str:
        """What the composer and the meter say while sending is paused, by whose limit."""
        if not self.paused or self.resets_at is None:
            return ""
        when = reset_words(self.resets_at)
        if self.paused_scope == "service":
            return _(
                "The service has reached today's spending limit: sending is paused until %(when)s."
            ) % {"when": when}
        return _("Your daily budget is used up: sending is paused until %(when)s.") % {"when": when}

    @property
    def short_text(self) -> str:
        """What the cost hint says when the money left cannot pay for the next message but
        sending is not paused: money held by replies still being written comes back when
        they finish; else the meter will refuse it (and that refusal pauses)."""
        if self.held_micros:
            return _(
                "Replies still being written hold %(held)s of today's budget: send when "
                "they finish."
            ) % {"held": format_usd(self.held_micros)}
        if self.resets_at is None:
            return ""
        return _("Not enough of today's budget is left for this model. It resets at %(when)s.") % {
            "when": reset_words(self.resets_at)
        }


def spend_today(user: User, *, refused: str = "") -> Spend:
    """The user's day. `refused`: the scope ("user" or "service") of a refusal the caller
    knows was recorded since the last turn that started (conversations.figures.spend_for);
    a budget or a service limit spent to its cap pauses without one."""
    day = today()
    rows = {
        row.scope: row
        for row in DailySpend.objects.filter(scope__in=[_scope(user), DailySpend.SERVICE], day=day)
    }
    mine, service = rows.get(_scope(user)), rows.get(DailySpend.SERVICE)
    cap, service_cap = user_cap_micros(user), service_cap_micros()
    spent = mine.spent_micros if mine else 0
    held = mine.reserved_micros if mine else 0
    service_spent = service.spent_micros if service else 0
    user_left = cap - spent - held
    service_left = service_cap - service_spent - (service.reserved_micros if service else 0)
    left = max(0, min(user_left, service_left))
    if service_left < user_left:
        held = service.reserved_micros if service else 0
    if spent >= cap:
        scope = "user"
    elif service_spent >= service_cap:
        scope = "service"
    else:
        scope = refused
    return Spend(spent, cap, left, resets_at(day), paused_scope=scope, held_micros=held)


def ledger_total(day: date, *, user: User | None = None) -> int:
    records = UsageRecord.objects.filter(day=day)
    if user is not None:
        records = records.filter(user=user)
    return records.aggregate(total=Sum("charged_micros"))["total"] or 0
