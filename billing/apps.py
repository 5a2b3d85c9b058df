from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing and models"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the startup checks)
