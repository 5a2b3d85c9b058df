"""Websocket handshakes from this site's own pages only.

Channels' AllowedHostsOriginValidator compares the Origin's *host* with ALLOWED_HOSTS and
ignores its port, so on a laptop (ALLOWED_HOSTS = 127.0.0.1, localhost) any page served by
another program on another port could open a socket with the user's cookies. A browser's
same-origin rule is scheme, host and port: here the Origin's host and port must be the
handshake's own Host (behind a proxy that passes Host on), or the Origin must be one of
CSRF_TRUSTED_ORIGINS (behind one that does not). A missing Origin, "null" and anything else
are refused before the socket is accepted.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings


def _netloc(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return parts.netloc.lower()


def same_origin(headers: dict[bytes, bytes]) -> bool:
    """Whether a handshake with these headers comes from a page of this site."""
    origin = headers.get(b"origin", b"").decode("latin-1").strip()
    if not origin or origin == "null":
        return False
    netloc = _netloc(origin)
    if netloc is None:
        return False
    if origin.rstrip("/").lower() in {o.rstrip("/").lower() for o in settings.CSRF_TRUSTED_ORIGINS}:
        return True
    host = headers.get(b"host", b"").decode("latin-1").strip().lower()
    return bool(host) and netloc == host


class SameOriginValidator:
    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and not same_origin(dict(scope.get("headers", []))):
            await WebsocketDenier()(scope, receive, send)
            return
        await self.application(scope, receive, send)
