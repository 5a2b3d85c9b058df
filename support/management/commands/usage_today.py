"""Print today's usage: the service's spend against its cap, requests by outcome and
error kind, and the top users.

    manage.py usage_today
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db.models import Count, Sum

from billing import meter
from billing.models import DailySpend, UsageRecord


class Command(BaseCommand):
    help = "Print today's usage summary."

    def handle(self, *args: Any, **options: Any) -> None:
        day = meter.today()
        spent = (
            DailySpend.objects.filter(scope=DailySpend.SERVICE, day=day)
            .values_list("spent_micros", flat=True)
            .first()
            or 0
        )
        cap = meter.service_cap_micros()
        out = self.stdout.write
        out(f"Usage on {day:%Y-%m-%d} ({meter.billing_zone()})")
        out(f"Spent: {meter.format_usd(spent)} of {meter.format_usd(cap)}")
        records = UsageRecord.objects.filter(day=day)
        totals = records.aggregate(
            requests=Count("id"), tokens_in=Sum("input_tokens"), tokens_out=Sum("output_tokens")
        )
        out(
            f"Requests: {totals['requests']} · tokens in {totals['tokens_in'] or 0:,} · "
            f"out {totals['tokens_out'] or 0:,}"
        )
        for row in records.values("outcome").annotate(n=Count("id")).order_by("-n"):
            out(f"  {row['outcome']}: {row['n']}")
        errors = records.exclude(error_kind="").values("error_kind").annotate(n=Count("id"))
        for error in errors.order_by("-n"):
            out(f"  error {error['error_kind']}: {error['n']}")
        top = (
            records.values("user__username")
            .annotate(spent=Sum("charged_micros"))
            .order_by("-spent")[:10]
        )
        if top:
            out("Top users:")
            for person in top:
                out(f"  {person['user__username']}: {meter.format_usd(person['spent'] or 0)}")
