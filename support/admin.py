"""Admin for people (spend, cap, suspension) and the audit log."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import CharField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Cast, Coalesce, Concat
from django.http import HttpRequest

from billing import meter
from billing.models import DailySpend, UserBudget

from . import (
    conversation_admin,  # noqa: F401  (registers Conversation and Message)
    services,
)
from .models import AuditLog

User = get_user_model()


class BudgetInline(admin.StackedInline):
    model = UserBudget
    can_delete = True
    extra = 0
    max_num = 1
    verbose_name = "daily budget override"
    verbose_name_plural = "daily budget override (empty: the default)"


admin.site.unregister(User)


@admin.register(User)
class PersonAdmin(UserAdmin):
    list_display = [
        "username",
        "is_active",
        "is_staff",
        "spent_today",
        "daily_cap",
        "last_login",
    ]
    list_filter = ["is_active", "is_staff", "is_superuser", "groups"]
    inlines = [BudgetInline]
    actions = ["suspend", "reactivate"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        """Today's spend and the cap in the same query as the people (no query per row)."""
        spent = DailySpend.objects.filter(
            day=meter.today(),
            scope=Concat(Value("user:"), Cast(OuterRef("pk"), CharField())),
        ).values("spent_micros")[:1]
        default_cap = meter.user_cap_micros(None)
        return (
            super()
            .get_queryset(request)
            .annotate(
                spent_micros=Coalesce(Subquery(spent), Value(0)),
                cap_micros=Coalesce("budget__daily_cap_micros", Value(default_cap)),
            )
        )

    @admin.display(description="spent today", ordering="spent_micros")
    def spent_today(self, user: Any) -> str:  # a User with get_queryset's figures
        return meter.format_usd(user.spent_micros)

    @admin.display(description="daily cap", ordering="cap_micros")
    def daily_cap(self, user: Any) -> str:  # a User with get_queryset's figures
        return meter.format_usd(user.cap_micros)

    @admin.action(
        description="Suspend the selected people (close their sockets)", permissions=["change"]
    )
    def suspend(self, request: HttpRequest, queryset: QuerySet) -> None:
        people = queryset.exclude(pk=request.user.pk)
        if not request.user.is_superuser:
            people = people.exclude(is_superuser=True)
        count = services.set_active(people, active=False)
        self.message_user(request, f"{count} suspended.", messages.SUCCESS)

    @admin.action(description="Reactivate the selected people", permissions=["change"])
    def reactivate(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = services.set_active(queryset, active=True)
        self.message_user(request, f"{count} reactivated.", messages.SUCCESS)


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    """Written by the app only; admins read it."""

    list_display = ["created_at", "actor", "owner", "conversation_id", "reason"]
    list_filter = ["action", "actor"]
    search_fields = ["actor__username", "owner__username", "reason", "conversation_id"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
