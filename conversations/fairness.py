"""The fairness limits of a person's turns, checked under a lock of their row.

One reply at a time per conversation, USER_MAX_ACTIVE_REPLIES being written at once in all,
and USER_RPM turns a minute. Checked inside the turn's transaction after locking the
person's row and the conversation's, so two requests of one person (in any process) cannot
both pass them.
"""

from __future__ import annotations

import math
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from billing.models import Reservation

from .models import Conversation, Message
from .services import TurnRefused


def lock_for_turn(user: User, conversation: Conversation) -> Conversation:
    """Inside a transaction: lock the user's row and the conversation's, then check the
    fairness limits, so two requests of one user cannot both pass them. Returns the locked
    conversation."""
    # FOR NO KEY UPDATE: turns of one person still wait for each other, but a row that
    # merely points at the user or the conversation (a usage record written as another
    # turn settles, holding its day's spend row) is not held up. With FOR UPDATE the two
    # deadlocked: this turn holding the user and waiting for the day's spend row, the
    # settling one holding that row and waiting for the user (its foreign-key check).
    get_user_model().objects.select_for_update(no_key=True).only("pk").get(pk=user.pk)
    locked = Conversation.objects.select_for_update(no_key=True).get(pk=conversation.pk)
    active = Message.objects.filter(
        conversation__owner=user,
        role=Message.Role.ASSISTANT,
        status__in=[Message.Status.PENDING, Message.Status.STREAMING],
    )
    if active.filter(conversation=locked).exists():
        raise TurnRefused(_("Wait for the current reply to finish, or stop it, before sending."))
    if active.count() >= settings.USER_MAX_ACTIVE_REPLIES:
        raise TurnRefused(
            _(
                "You already have %(count)s replies being written. Wait for one to finish, "
                "or stop one, before sending."
            )
            % {"count": settings.USER_MAX_ACTIVE_REPLIES}
        )
    within_rpm(user)
    return locked


def within_rpm(user: User) -> None:
    """At most USER_RPM turns a minute. Every request that may reach a model holds a
    reservation, and a message refused for want of budget leaves a refused reply: count
    this minute's of both."""
    minute_ago = timezone.now() - timedelta(seconds=60)
    limit = max(1, settings.USER_RPM)
    starts = sorted(
        [
            *Reservation.objects.filter(user=user, created_at__gte=minute_ago)
            .order_by("-created_at")
            .values_list("created_at", flat=True)[:limit],
            *Message.objects.filter(
                conversation__owner=user,
                role=Message.Role.ASSISTANT,
                reservation_id__isnull=True,
                created_at__gte=minute_ago,
            )
            .order_by("-created_at")
            .values_list("created_at", flat=True)[:limit],
        ],
        reverse=True,
    )
    if len(starts) >= limit:
        wait = (starts[limit - 1] + timedelta(seconds=60) - timezone.now()).total_seconds()
        raise TurnRefused(
            ngettext(
                "You're sending faster than %(limit)s message a minute. Try again in %(wait)s s.",
                "You're sending faster than %(limit)s messages a minute. Try again in %(wait)s s.",
                limit,
            )
            % {"limit": limit, "wait": max(1, math.ceil(wait))}
        )
