"""Startup checks for streaming: settings that would lose replies in production."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register


@register("channels")
def check_channel_layer(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The in-memory channel layer reaches only the process it lives in: with several
    worker processes a reply would stream to some viewers and not others. It is for one
    process on a laptop (DEBUG on), never for production."""
    backend = str(settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", ""))
    if not settings.DEBUG and backend.endswith("InMemoryChannelLayer"):
        return [
            Error(
                "The in-memory channel layer is in use with DEBUG off.",
                hint="Set REDIS_URL so every worker process shares one channel layer.",
                id="conversations.E001",
            )
        ]
    return []
