"""Suspending people, and what support may read."""

from __future__ import annotations

import time
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest

from .models import AuditLog

GRANT_SECONDS = 15 * 60  # how long a recorded reason opens a conversation's text


def user_group(user_id: int) -> str:
    """Every socket of a user listens here, in every process, for its account closing."""
    return f"user-{user_id}"


def close_sockets(user_id: int) -> None:
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(user_group(user_id), {"type": "account.closed"})


def suspend(users: Iterable[AbstractBaseUser]) -> int:
    """Suspended people cannot sign in or start a turn, and their open sockets close.
    (Saving the user closes the sockets: see signals.py.)"""
    count = 0
    for user in users:
        if user.is_active:
            user.is_active = False
            user.save(update_fields=["is_active"])
            count += 1
    return count


def reactivate(users: Iterable[AbstractBaseUser]) -> int:
    count = 0
    for user in users:
        if not user.is_active:
            user.is_active = True
            user.save(update_fields=["is_active"])
            count += 1
    return count


def reads_freely(user: AbstractBaseUser) -> bool:
    """Admins read conversation text without giving a reason (their reads are logged)."""
    return bool(user.is_superuser)


def may_read(request: HttpRequest, conversation_id: object) -> bool:
    """Whether this request may show the conversation's text: an admin, or someone who
    recorded a reason for it in the last GRANT_SECONDS."""
    if reads_freely(request.user):
        return True
    grants = request.session.get("text_grants", {})
    return grants.get(str(conversation_id), 0) > time.time()


def record_reason(
    request: HttpRequest, *, conversation_id: object, owner: AbstractBaseUser | None, reason: str
) -> AuditLog:
    entry = AuditLog.objects.create(
        actor=request.user, conversation_id=conversation_id, owner=owner, reason=reason
    )
    grants = request.session.get("text_grants", {})
    grants[str(conversation_id)] = time.time() + GRANT_SECONDS
    request.session["text_grants"] = grants
    return entry
