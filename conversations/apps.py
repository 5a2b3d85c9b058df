from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"

    def ready(self) -> None:
        from . import (
            checks,  # noqa: F401  (registers the startup checks)
            signals,  # noqa: F401  (signing out closes that sign-in's sockets)
        )
