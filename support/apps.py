from django.apps import AppConfig


class SupportConfig(AppConfig):
    name = "support"
    verbose_name = "Support"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (closes a suspended user's sockets)
