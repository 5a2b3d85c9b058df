"""What a chat socket is to its person: the groups it listens on for its account and
sign-in, and the middleware that gives it its page's language and checks, before each
message, that its sign-in still holds.

Every socket of a person listens on their account's group (the account suspended, their
spend changed), and on its sign-in's group (that session signed out), in every process.
"""

from __future__ import annotations

import hashlib
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, get_user_model
from django.utils import translation
from django.utils.crypto import constant_time_compare

ACCOUNT_CLOSED = 4003  # the close code a suspended account's sockets get


def user_group(user_id: int) -> str:
    """Every socket of a person listens here, in every process: for its account closing,
    and for their spend changing (spend_changed)."""
    return f"user-{user_id}"


def session_group(session_key: str) -> str:
    """Every socket opened with one sign-in listens here, for that sign-in ending. The key is
    hashed: group names are visible in Redis, a session key is a credential."""
    return "session-" + hashlib.sha256(session_key.encode()).hexdigest()[:32]


def close_sockets(user_id: int) -> None:
    """Close every open socket of this person (their account was suspended). From sync
    code: the admin, a signal."""
    _close(user_group(user_id))


def close_session_sockets(session_key: str) -> None:
    """Close the sockets opened with this sign-in (it signed out); other devices stay."""
    _close(session_group(session_key))


def _close(group: str) -> None:
    from asgiref.sync import async_to_sync

    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(group, {"type": "account.closed"})


async def spend_changed(user_id: int, *, shown_in: str = "") -> None:
    """Tell every open page of this person, in every process, that their spend changed (a
    turn settled, or was refused): each socket renders its spend meter anew, in its own
    page's language. Not per token: once per turn. The sockets watching `shown_in` (the
    turn's conversation group) skip it: the turn's own frame brought them the meter."""
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(user_group(user_id), {"type": "spend.changed", "shown_in": shown_in})


def account_groups(scope: dict[str, Any]) -> list[str]:
    """The groups a socket joins for its person and its sign-in."""
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        return []
    groups = [user_group(user.pk)]
    session = scope.get("session")
    if session is not None and session.session_key:
        groups.append(session_group(session.session_key))
    return groups


def page_language(scope: dict[str, Any]) -> str:
    """The page's language, as LocaleMiddleware chooses it for pages: the user's choice
    (the language cookie), else the browser's Accept-Language, else the default."""
    from django.utils.translation.trans_real import parse_accept_lang_header

    candidates = [scope.get("cookies", {}).get(settings.LANGUAGE_COOKIE_NAME, "")]
    headers = dict(scope.get("headers", []))
    accept = headers.get(b"accept-language", b"").decode("latin-1")
    candidates += [code for code, _quality in parse_accept_lang_header(accept)]
    for code in candidates:
        if code and code != "*":
            try:
                return translation.get_supported_language_variant(code)
            except LookupError:
                continue
    return settings.LANGUAGE_CODE


@database_sync_to_async
def still_signed_in(scope: dict[str, Any]) -> bool:
    """Whether the socket's sign-in still holds: its account is active, its session has
    not signed out and its password has not changed since it connected (the checks
    Django's auth makes on every page request)."""
    user = get_user_model().objects.filter(pk=scope["user"].pk, is_active=True).first()
    session = scope.get("session")
    if user is None or session is None or not session.session_key:
        return False
    if not session.exists(session.session_key):
        return False  # signed out (the session row is gone)
    return constant_time_compare(session.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash())


class SocketSession:
    """ASGI middleware for the chat socket (inside the auth middleware). Everything the
    socket does, a generation it starts included, speaks the page's language
    (`scope["language"]`). A message that arrives after the account was suspended, the
    session signed out or the password changed is not passed on: the socket is closed
    with ACCOUNT_CLOSED instead."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = {**scope, "language": page_language(scope)}

        async def checked_receive() -> dict[str, Any]:
            event: dict[str, Any] = await receive()
            user = scope.get("user")
            signed_in = user is not None and user.is_authenticated
            if event["type"] == "websocket.receive" and signed_in:
                if not await still_signed_in(scope):
                    await send({"type": "websocket.close", "code": ACCOUNT_CLOSED})
                    return {"type": "websocket.disconnect", "code": ACCOUNT_CLOSED}
            return event

        with translation.override(scope["language"]):
            return await self.inner(scope, checked_receive, send)
