"""The support dashboard (staff), and each user's own usage page. Figures come straight
from the ledgers (DailySpend, UsageRecord); charts are SVG drawn here, nothing fetched."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import date, timedelta
from uuid import UUID

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required, permission_required
from django.db.models import Count, Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.http import AuthenticatedHttpRequest
from billing import meter
from billing.models import DailySpend, UsageRecord
from conversations.models import Conversation

from .labels import error_kind_label

DAYS = 30
CHART_HEIGHT = 120
BAR_PITCH = 20  # viewBox units per day; each bar is 16 wide
# Days labelled under a chart: every 7th, counting back from today (the newest is always
# labelled). On a phone only every 14th shows (CSS), so labels never run together.
TICK_EVERY = 7
PHONE_TICK_EVERY = 14


@dataclass
class Bar:
    day: date
    value: int
    label: str
    x: int = 0
    height: int = 0
    tick: str = ""  # "", "week" (labelled on wide screens) or "always"

    @property
    def y(self) -> int:
        return CHART_HEIGHT - self.height


@dataclass
class Chart:
    """One bar per day, on a scale whose top is a round figure, with the scale's figures
    (top first, as the page lists them beside the chart)."""

    bars: list[Bar]
    scale: list[str]
    gridlines: list[int] = field(default_factory=list)  # y of each figure's line


MAX_INTERVALS = 5


def nice_scale(largest: int) -> tuple[int, int]:
    """The step and the number of intervals of a scale reaching at least `largest`: the
    step the smallest of 1, 2, 5, 10, 20, 50… (whole units) that needs at most
    MAX_INTERVALS intervals, so the top figure is round and the tallest bar fills most of
    the height."""
    largest = max(1, largest)
    magnitude = 1
    while True:
        for base in (1, 2, 5):
            step = base * magnitude
            intervals = -(-largest // step)
            if intervals <= MAX_INTERVALS:
                return step, intervals
        magnitude *= 10


def day_chart(values: dict[date, int], end: date, fmt=str) -> Chart:  # type: ignore[no-untyped-def]
    """The last DAYS days, one bar each, scaled to a round top figure."""
    days = [end - timedelta(days=n) for n in range(DAYS - 1, -1, -1)]
    largest = max(values.get(day, 0) for day in days)
    step, intervals = nice_scale(largest)
    top = step * intervals
    chart_bars = []
    for index, day in enumerate(days):
        from_end = DAYS - 1 - index
        tick = ""
        if from_end % PHONE_TICK_EVERY == 0:
            tick = "always"
        elif from_end % TICK_EVERY == 0:
            tick = "week"
        value = values.get(day, 0)
        chart_bars.append(
            Bar(
                day=day,
                value=value,
                label=fmt(value),
                x=index * BAR_PITCH,
                height=round(value / top * CHART_HEIGHT),
                tick=tick,
            )
        )
    if not largest:  # nothing to scale: the baseline alone
        return Chart(bars=chart_bars, scale=[fmt(0)], gridlines=[CHART_HEIGHT])
    return Chart(
        bars=chart_bars,
        scale=[fmt(step * n) for n in range(intervals, -1, -1)],
        gridlines=[CHART_HEIGHT - n * CHART_HEIGHT // intervals for n in range(intervals + 1)],
    )


def percentile(values: list[int], share: float) -> int | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return round(statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1])


def _top_users(day: date) -> list[dict[str, str]]:
    """The ten people who spent most on `day`, by name (their scope if the account is
    gone), with what they spent."""
    top_rows = list(
        DailySpend.objects.filter(day=day, scope__startswith="user:", spent_micros__gt=0)
        .order_by("-spent_micros")
        .values_list("scope", "spent_micros")[:10]
    )
    names = dict(
        get_user_model()
        .objects.filter(pk__in=[int(scope.split(":")[1]) for scope, _ in top_rows])
        .values_list("pk", "username")
    )
    return [
        {"name": names.get(int(scope.split(":")[1]), scope), "spent": meter.format_usd(spent)}
        for scope, spent in top_rows
    ]


def _upstream_figures(records: QuerySet[UsageRecord]) -> dict[str, object]:
    """How the upstream behaved over `records`: time to first token at three percentiles,
    requests, rate limits met and retries taken."""
    # The most recent 100,000 (a bounded page load, and the freshest picture).
    ttfts = sorted(
        ttft
        for ttft in records.filter(ttft_ms__isnull=False)
        .order_by("-created_at")
        .values_list("ttft_ms", flat=True)[:100_000]
        if ttft is not None
    )
    upstream = records.aggregate(
        rate_limited=Count("id", filter=Q(error_kind="rate_limit")),
        retries=Sum("retries"),
        requests=Count("id"),
    )
    return {
        "ttft": {
            "p50": percentile(ttfts, 0.50),
            "p95": percentile(ttfts, 0.95),
            "p99": percentile(ttfts, 0.99),
            "count": len(ttfts),
        },
        "rate_limited": upstream["rate_limited"],
        "retries": upstream["retries"] or 0,
        "requests": upstream["requests"],
    }


@login_required
@permission_required("support.view_dashboard", raise_exception=True)
def dashboard(request: HttpRequest) -> HttpResponse:
    today = meter.today()
    since = today - timedelta(days=DAYS - 1)
    service = {
        row.day: row.spent_micros
        for row in DailySpend.objects.filter(scope=DailySpend.SERVICE, day__gte=since)
    }
    spent_today = service.get(today, 0)
    cap = meter.service_cap_micros()
    records = UsageRecord.objects.filter(day__gte=since)
    errors_by_day = dict(records.exclude(error_kind="").values_list("day").annotate(n=Count("id")))
    errors_by_kind = list(
        records.exclude(error_kind="")
        .values("error_kind")
        .annotate(n=Count("id"))
        .order_by("-n", "error_kind")
    )
    context = {
        "today": today,
        "spent_today": meter.format_usd(spent_today),
        "cap": meter.format_usd(cap),
        "cap_percent": min(100, round(spent_today / cap * 100)) if cap else 0,
        "spend_chart": day_chart(service, today, meter.format_usd),
        "error_chart": day_chart(errors_by_day, today),
        "errors_by_kind": [
            {**row, "label": error_kind_label(row["error_kind"])} for row in errors_by_kind
        ],
        "top_users": _top_users(today),
        **_upstream_figures(records),
        "chart_height": CHART_HEIGHT,
        "chart_width": DAYS * BAR_PITCH,
    }
    return render(request, "support/dashboard.html", context)


@login_required
def usage(request: AuthenticatedHttpRequest) -> HttpResponse:
    """What I spent: per day, per conversation, and what is left today."""
    today = meter.today()
    since = today - timedelta(days=DAYS - 1)
    spend = meter.spend_today(request.user)
    mine = {
        row.day: row.spent_micros
        for row in DailySpend.objects.filter(scope=f"user:{request.user.pk}", day__gte=since)
    }
    rows = list(
        UsageRecord.objects.filter(user=request.user, day__gte=since)
        .values("conversation_id")
        .annotate(spent=Sum("charged_micros"), requests=Count("id"))
        .order_by("-spent")[:50]
    )
    titles: dict[UUID | None, str] = dict(
        Conversation.objects.filter(
            owner=request.user, pk__in=[row["conversation_id"] for row in rows]
        ).values_list("pk", "title")
    )
    per_conversation = [
        {
            **row,
            "title": titles.get(row["conversation_id"]),
            "spent_text": meter.format_usd(row["spent"] or 0),
        }
        for row in rows
    ]
    context = {
        "spend": spend,
        # What a turn may still reserve, as the chat's meter says: less what replies being
        # written hold, and never more than the service's own limit leaves.
        "left": meter.format_usd(spend.left_micros),
        "resets_at": meter.resets_at(today),
        "spend_chart": day_chart(mine, today, meter.format_usd),
        "per_conversation": per_conversation,
        "chart_height": CHART_HEIGHT,
        "chart_width": DAYS * BAR_PITCH,
    }
    return render(request, "support/usage.html", context)
