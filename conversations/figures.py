"""The figures a chat page shows beside the messages: today's spend, what the next message
may cost at most, and how full the context window is. One place for each, read by the page
on load and by the frames that refresh them after every turn, so both say the same."""

from __future__ import annotations

import json
from datetime import datetime, time
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Exists, OuterRef, Q, Sum

from billing import catalog, meter
from billing.models import Reservation

from .models import Conversation, Message
from .selectors import shown_messages

CONTEXT_WARNING = 0.8  # the model card: quality degrades near the context limit


def spend_for(user: User) -> meter.Spend:
    """The user's day, paused (by its scope: their budget or the service's limit) if their
    latest turn was refused for want of budget and none has started since (a cheaper or
    free model may still answer). A refusal only for money that replies still being
    written hold (`held` in its figures) pauses nothing: that money comes back."""
    refused = (
        Message.objects.filter(
            conversation__owner=user,
            role=Message.Role.ASSISTANT,
            error_kind__in=["budget_user", "budget_service"],
            reservation_id__isnull=True,
            created_at__gte=datetime.combine(meter.today(), time.min, meter.billing_zone()),
        )
        .order_by("-id")
        .values_list("created_at", "error_kind", "notice_figures")
        .first()
    )
    scope = ""
    if refused is not None:
        created_at, kind, held = refused[0], refused[1], (refused[2] or {}).get("held")
        if (
            not held
            and not Reservation.objects.filter(user=user, created_at__gt=created_at).exists()
        ):
            scope = kind.removeprefix("budget_")
    return meter.spend_today(user, refused=scope)


def history_tokens(conversation: Conversation | None) -> int:
    """The input tokens the next message adds to besides its own text, counted as the
    server counts them when it starts the turn (services._fit with the stored estimates),
    so what the model reads: the cost hint and the context gauge both use it.
    the system prompt, and the stored estimate (with its framing) of each message of the
    history it would send: not a question left without an answer (a refusal, a failure
    before any text), nor an answer a later one to the same question replaced. In SQL
    sums, so the page's work does not grow with the conversation."""
    if conversation is None:
        return 0
    system = conversation.system_prompt
    total = catalog.estimate_tokens(system) if system else 0
    shown = shown_messages(conversation)
    answers = shown.filter(role=Message.Role.ASSISTANT).exclude(content="")
    later_answer = answers.filter(reply_to_id=OuterRef("reply_to_id"), id__gt=OuterRef("id"))
    sent = shown.filter(
        Q(role=Message.Role.USER, id__in=answers.values("reply_to_id"))
        | Q(role=Message.Role.ASSISTANT, reply_to__isnull=True)
        | Q(role=Message.Role.ASSISTANT, reply_to__isnull=False, content__gt="")
        & ~Exists(later_answer)
    )
    return total + (sent.aggregate(total=Sum("context_tokens"))["total"] or 0)


def cost_estimate(conversation: Conversation | None, models: list[Any]) -> dict[str, object]:
    """What chat.js needs to say what the next message may cost at most: per model its
    prices and limits, the conversation's longest-reply setting and history."""
    return {
        "history_tokens": history_tokens(conversation),
        "max_output_setting": conversation.max_output_tokens if conversation else None,
        "min_useful": settings.MIN_USEFUL_OUTPUT_TOKENS,
        "models_json": json.dumps(
            {
                model.slug: {
                    "in": model.input_price_per_1k_micros or 0,
                    "out": model.output_price_per_1k_micros or 0,
                    "max": model.max_output_tokens,
                    "window": model.context_window,
                }
                for model in models
            }
        ),
        "money": meter.money_format(),
    }


def context_gauge(conversation: Conversation | None) -> dict[str, object] | None:
    """How much of the model's context window the conversation fills."""
    if conversation is None:
        return None
    model = catalog.get_model(conversation.model)
    if model is None or not model.context_window:
        return None
    # What the next request sends (the history the model reads), as the cost hint counts it.
    used = history_tokens(conversation)
    share = used / model.context_window
    percent = min(100, round(share * 100))
    return {
        "used": used,
        "window": model.context_window,
        "percent": percent,
        # A short chat in a large window is not empty: it reads "<1%", not "0%".
        "shown": "<1" if used and not percent else str(percent),
        "warn": share >= CONTEXT_WARNING,
    }
