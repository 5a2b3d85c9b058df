"""The staff banner's data: open alerts, for staff only."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject


def staff_alerts(request: HttpRequest) -> dict[str, object]:
    """Context processor: `staff_alerts`, the open alerts, for a staff member only (a plain
    user's pages carry nothing, and cost no query); `alerts_mailed`, whether they are
    e-mailed too."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_staff:
        return {}
    from .alerts import open_alerts

    return {
        "staff_alerts": SimpleLazyObject(open_alerts),
        "alerts_mailed": bool(settings.ALERT_EMAILS),
    }
