"""Suspending people, and what support may read."""

from __future__ import annotations

import time
from collections.abc import Iterable
from uuid import UUID

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from .models import AuditLog

GRANT_SECONDS = 15 * 60  # how long a recorded reason opens a conversation's text


def set_active(users: Iterable[User], *, active: bool) -> int:
    """Suspend (active=False) or reactivate people; how many changed. Suspended people
    cannot sign in or start a turn, and saving them closes their open sockets (see
    signals.py)."""
    count = 0
    for user in users:
        if user.is_active != active:
            user.is_active = active
            user.save(update_fields=["is_active"])
            count += 1
    return count


def reads_freely(user: User | AnonymousUser) -> bool:
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
    request: HttpRequest, *, conversation_id: UUID, owner: User | None, reason: str
) -> AuditLog:
    if not request.user.is_authenticated:  # the admin site lets only staff in
        raise PermissionDenied
    entry = AuditLog.objects.create(
        actor=request.user, conversation_id=conversation_id, owner=owner, reason=reason
    )
    grants = request.session.get("text_grants", {})
    grants[str(conversation_id)] = time.time() + GRANT_SECONDS
    request.session["text_grants"] = grants
    return entry
