"""Notices stored as figures, not words: a reply's notice is written when shown, in the
reader's language. Old notices (budget refusals written in the language of their moment)
become their figures: the amounts they name (always written "$0.01" then, in any
language: spent then cap for a user's budget, the cap for the service's) and the reset
that followed the day they were written. A notice whose amounts cannot be read keeps its
reset time only, and reads as the error catalog's words for its kind. Rolled back, refusals get their words
again, written from the figures in the default language."""

import re
import zoneinfo
from datetime import datetime, time, timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import migrations, models

AMOUNT = re.compile(r"\$(\d[\d,]*(?:\.\d+)?)")


def _micros(text: str) -> int | None:
    try:
        return int(Decimal(text.replace(",", "")) * 1_000_000)
    except InvalidOperation:
        return None


def notice_to_figures(apps, schema_editor):  # type: ignore[no-untyped-def]
    Message = apps.get_model("conversations", "Message")
    zone = zoneinfo.ZoneInfo(settings.BILLING_TIMEZONE)
    for message in Message.objects.exclude(notice="").iterator():
        day = message.created_at.astimezone(zone).date()
        reset = datetime.combine(day + timedelta(days=1), time.min, zone)
        figures: dict[str, object] = {"resets_at": reset.isoformat()}
        amounts = [_micros(found) for found in AMOUNT.findall(message.notice)]
        if message.error_kind == "budget_user" and len(amounts) >= 2 and None not in amounts:
            figures.update(spent=amounts[0], cap=amounts[1])
        elif message.error_kind == "budget_service" and amounts and amounts[0] is not None:
            figures.update(cap=amounts[0])
        Message.objects.filter(pk=message.pk).update(notice_figures=figures)


def figures_to_notice(apps, schema_editor):  # type: ignore[no-untyped-def]
    """Back to words: each budget refusal's notice written again from its figures, in the
    default language (as the words the app wrote then, in the one language it can pick
    here). Only refusals had a notice."""
    from django.utils import translation

    from billing.meter import refusal_words

    Message = apps.get_model("conversations", "Message")
    refusals = Message.objects.filter(error_kind__in=["budget_user", "budget_service"])
    with translation.override(settings.LANGUAGE_CODE):
        for message in refusals.iterator():
            scope = message.error_kind.removeprefix("budget_")
            words = refusal_words(scope, message.notice_figures)
            if words:
                Message.objects.filter(pk=message.pk).update(notice=words)


class Migration(migrations.Migration):
    dependencies = [("conversations", "0008_message_context_tokens")]

    operations = [
        migrations.AddField(
            model_name="message",
            name="notice_figures",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(notice_to_figures, figures_to_notice),
        migrations.RemoveField(model_name="message", name="notice"),
    ]
