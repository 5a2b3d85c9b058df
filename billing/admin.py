import csv
from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.urls import path

from . import meter
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
    list_display = ["__str__", "signup_open", "default_user_cap_micros", "service_cap_micros"]

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


def _cell(value: object) -> object:
    """Text a spreadsheet would run as a formula is written as text."""
    if isinstance(value, str) and value[:1] in {"=", "+", "-", "@", "\t", "\r"}:
        return "'" + value
    return value


class TopUserFilter(admin.SimpleListFilter):
    """By user: the 30 with the most requests in the last 30 days are listed (any user's
    id works in the address, `?user=ID`); listing every user would not scale."""

    title = "user"
    parameter_name = "user"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        since = meter.today() - timedelta(days=30)
        top = (
            UsageRecord.objects.filter(day__gte=since)
            .values("user_id", "user__username")
            .annotate(n=Count("id"))
            .order_by("-n")[:30]
        )
        return [(str(row["user_id"]), row["user__username"]) for row in top]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        value = self.value()
        return queryset.filter(user_id=value) if value and value.isdigit() else queryset


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    change_list_template = "admin/billing/usagerecord/change_list.html"
    CSV_FIELDS = [
        "created_at",
        "day",
        "user",
        "model",
        "conversation_id",
        "message_id",
        "input_tokens",
        "output_tokens",
        "cost_micros",
        "charged_micros",
        "outcome",
        "error_kind",
        "error_detail",
        "upstream_request_id",
        "ttft_ms",
        "duration_ms",
        "retries",
    ]

    def get_urls(self) -> list[Any]:
        export = self.admin_site.admin_view(self.export_csv)
        return [path("export.csv", export, name="billing_usagerecord_export"), *super().get_urls()]

    def export_csv(self, request: HttpRequest) -> HttpResponse:
        """The list as filtered on the page (filters, date, search), as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        rows = changelist.get_queryset(request).select_related("user").order_by("created_at")
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="usage.csv"'
        writer = csv.writer(response)
        writer.writerow(self.CSV_FIELDS)
        for record in rows.iterator():
            writer.writerow(
                [
                    _cell(record.user.get_username() if name == "user" else getattr(record, name))
                    for name in self.CSV_FIELDS
                ]
            )
        return response

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
    list_filter = ["day", TopUserFilter, "model", "outcome", "error_kind"]
    search_fields = ["user__username", "upstream_request_id"]
    date_hierarchy = "day"
