"""Alerts in Django admin: listed, filtered by kind and by acknowledged, acknowledged in bulk.
Read only: an alert is what happened, not something to edit."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from .models import Alert


class AcknowledgedFilter(admin.SimpleListFilter):
    title = "acknowledged"
    parameter_name = "acknowledged"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("no", "Open"), ("yes", "Acknowledged")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Alert]) -> QuerySet[Alert]:
        if self.value() == "no":
            return queryset.filter(acknowledged_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(acknowledged_at__isnull=False)
        return queryset


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = [
        "kind",
        "count",
        "first_seen",
        "last_seen",
        "last_mailed_at",
        "acknowledged_at",
        "acknowledged_by",
    ]
    list_filter = ["kind", AcknowledgedFilter]
    date_hierarchy = "last_seen"
    actions = ["acknowledge"]
    readonly_fields = [field.name for field in Alert._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Alert | None = None) -> bool:
        return False  # read only; acknowledging is the action (or the banner's button)

    @admin.action(description="Acknowledge the selected alerts", permissions=["view"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        done = queryset.filter(acknowledged_at__isnull=True).update(
            acknowledged_at=timezone.now(), acknowledged_by=request.user
        )
        self.message_user(request, f"{done} alert(s) acknowledged.", messages.SUCCESS)
