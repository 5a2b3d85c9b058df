from django.contrib import admin
from django.http import HttpRequest

from .models import (
    CatalogModel,
    DailySpend,
    Reservation,
    ServiceSettings,
    UsageRecord,
    UserBudget,
)


@admin.register(ServiceSettings)
class ServiceSettingsAdmin(admin.ModelAdmin):
    list_display = ["__str__", "signup_open"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not ServiceSettings.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(CatalogModel)
class CatalogModelAdmin(admin.ModelAdmin):
    list_display = [
        "slug",
        "display_name",
        "provider",
        "context_window",
        "max_output_tokens",
        "input_price_per_1k_micros",
        "output_price_per_1k_micros",
        "enabled",
    ]
    list_filter = ["provider", "enabled"]
    search_fields = ["slug", "display_name"]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Ledgers are written by the meter only."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(UserBudget)
class UserBudgetAdmin(admin.ModelAdmin):
    list_display = ["user", "daily_cap_micros"]
    search_fields = ["user__username"]
    autocomplete_fields = ["user"]


@admin.register(DailySpend)
class DailySpendAdmin(ReadOnlyAdmin):
    list_display = ["scope", "day", "spent_micros", "reserved_micros"]
    list_filter = ["day"]
    date_hierarchy = "day"


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    list_display = ["id", "user", "day", "model", "amount_micros", "state", "charged_micros"]
    list_filter = ["state", "day", "model"]


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "user",
        "model",
        "input_tokens",
        "output_tokens",
        "charged_micros",
        "outcome",
        "error_kind",
        "upstream_request_id",
    ]
    list_filter = ["day", "model", "outcome", "error_kind"]
    search_fields = ["user__username", "upstream_request_id"]
    date_hierarchy = "day"
