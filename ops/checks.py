"""Startup checks: production settings that would be unsafe are refused at start; alerts
that would reach nobody by e-mail are said."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register


@register("security")
def check_production_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG:
        return []  # a laptop: anything goes
    problems: list[CheckMessage] = []
    if settings.SECRET_KEY == settings.DEFAULT_SECRET_KEY or len(settings.SECRET_KEY) < 50:
        problems.append(
            Error(
                "SECRET_KEY is the development default (or too short) with DEBUG off.",
                hint="Set SECRET_KEY to a long random value (50 characters or more).",
                id="ops.E001",
            )
        )
    if "*" in settings.ALLOWED_HOSTS:
        problems.append(
            Error(
                "ALLOWED_HOSTS contains '*' with DEBUG off: websocket Origin checks follow "
                "ALLOWED_HOSTS, so any site could open a socket as a signed-in user.",
                hint="List the host names the app is served under.",
                id="ops.E002",
            )
        )
    return problems


@register("ops")
def check_alert_emails(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Alerts are always on the staff banner; without ALERT_EMAILS nobody is e-mailed, so an
    administrator away from the site learns of a refused key only when they next look."""
    if settings.ALERT_EMAILS:
        return []
    return [
        Warning(
            "ALERT_EMAILS is empty: alerts (a refused API key, the provider's billing, the "
            "daily cap) are shown to staff on every page but e-mailed to nobody.",
            hint="Set ALERT_EMAILS (a comma list) and EMAIL_HOST, EMAIL_PORT, "
            "EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS, DEFAULT_FROM_EMAIL.",
            id="ops.W001",
        )
    ]
