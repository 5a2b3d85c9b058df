"""Alerts: what an administrator must act on, kept until someone acknowledges it.

One open (unacknowledged) row per kind: the same failure a thousand times is one alert with
a count of a thousand, not a thousand e-mails. An alert holds what to check and the
upstream's status, error type and request id; never a key, and never a person's text.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Alert(models.Model):
    class Kind(models.TextChoices):
        AUTHENTICATION = "authentication", _("The provider refused the API key")
        PERMISSION = "permission", _("The API key may not use this model")
        BILLING = "billing", _("The provider account is out of credit")
        SPEND_LIMIT = "spend_limit", _("The provider's spend limit was reached")
        BUDGET_PRICE = "budget_price", _("A model has no valid price")
        UPSTREAM_FAILURES = "upstream_failures", _("Many server errors or timeouts upstream")
        SERVICE_CAP_80 = "service_cap_80", _("The service has used 80% of its daily cap")
        SERVICE_CAP_100 = "service_cap_100", _("The service has reached its daily cap")
        STARTUP_CHECK = "startup_check", _("A start-up check failed")
        RECOVERY = "recovery", _("Replies of a dead server process were settled")

    kind = models.CharField(max_length=40, choices=Kind.choices)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    count = models.PositiveIntegerField(default=1, help_text="Times it happened in all.")
    count_at_last_mail = models.PositiveIntegerField(
        default=0, help_text="The count the last e-mail reported."
    )
    last_mailed_at = models.DateTimeField(null=True, blank=True)
    what_to_check = models.TextField(blank=True)
    detail = models.TextField(blank=True, help_text="Figures or check ids; never a key.")
    upstream_status = models.PositiveSmallIntegerField(null=True, blank=True)
    upstream_error_type = models.CharField(max_length=100, blank=True)
    upstream_request_id = models.CharField(max_length=200, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-last_seen"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind"],
                condition=Q(acknowledged_at__isnull=True),
                name="ops_one_open_alert_per_kind",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ×{self.count}"

    @property
    def is_open(self) -> bool:
        return self.acknowledged_at is None

    @property
    def unmailed(self) -> int:
        """How many times it happened since the last e-mail."""
        return self.count - self.count_at_last_mail
