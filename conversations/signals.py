"""Signing out closes the sockets that sign-in opened, in every process."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from .sockets import close_session_sockets


@receiver(user_logged_out)
def close_sockets_of_signed_out_session(sender: Any, request: Any, **kwargs: Any) -> None:
    # Sent before the session is flushed, so its key is still there.
    session = getattr(request, "session", None)
    if session is not None and session.session_key:
        close_session_sockets(session.session_key)
