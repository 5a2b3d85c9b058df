from django.contrib import admin
from django.http import HttpRequest

from .models import CatalogModel, ServiceSettings


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
