"""Admin for people (spend, cap, suspension) and the audit log."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from billing import meter
from billing.models import UserBudget

from . import services
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

    @admin.display(description="spent today")
    def spent_today(self, user: User) -> str:  # type: ignore[valid-type]
        return meter.format_usd(meter.spend_today(user).spent_micros)

    @admin.display(description="daily cap")
    def daily_cap(self, user: User) -> str:  # type: ignore[valid-type]
        return meter.format_usd(meter.user_cap_micros(user))

    @admin.action(description="Suspend the selected people (close their sockets)")
    def suspend(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = services.suspend(queryset.exclude(pk=request.user.pk))
        self.message_user(request, f"{count} suspended.", messages.SUCCESS)

    @admin.action(description="Reactivate the selected people")
    def reactivate(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = services.reactivate(queryset)
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
