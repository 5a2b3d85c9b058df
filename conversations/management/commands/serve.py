"""`manage.py serve`: migrate, then serve HTTP and websockets with daphne.

On a fresh clone it answers with the built-in local model (SmolLM2), so it chats with no key
and no network. With ANTHROPIC_SIMULATOR on it also starts the claude-4-6 simulator inside
the process and points the anthropic provider at it.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Apply migrations and serve the chat app (HTTP and websockets) with daphne."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-migrate", action="store_true", help="skip migrations")

    def handle(self, *args: Any, **options: Any) -> None:
        # daphne installs Twisted's asyncio reactor on import: it must come first.
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        if not options["no_migrate"]:
            call_command("migrate", interactive=False, verbosity=1)
        if settings.ANTHROPIC_SIMULATOR:
            self._start_simulator()
        # After migrating (the checks read the model catalog) and after the simulator set
        # its URL and key.
        self.check(display_num_errors=True)
        self._start_recovery()

        from chatsite.asgi import application

        host, port = options["host"], options["port"]
        self.stdout.write(self.style.SUCCESS(f"Serving on http://{host}:{port}/"))
        Server(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            signal_handlers=True,
            ping_interval=20,
            ping_timeout=30,
            websocket_handshake_timeout=10,
            application_close_timeout=10,
            server_name="chatsite",
        ).run()

    def _start_recovery(self) -> None:
        """Settle turns whose process died (at start, then every so often): their replies
        are marked interrupted and their reservations settled; nothing is re-run."""
        from django.db import close_old_connections

        from conversations.services import recover_stale_turns

        def loop() -> None:
            while True:
                try:
                    recovered = recover_stale_turns()
                    if recovered:
                        self.stdout.write(f"Recovered {recovered} interrupted turn(s).")
                except Exception as exc:  # Recovery must never take the server down.
                    self.stderr.write(f"Recovery failed: {exc}")
                finally:
                    close_old_connections()
                stop.wait(settings.RECOVERY_STALE_SECONDS / 2)

        stop = threading.Event()
        threading.Thread(target=loop, name="turn-recovery", daemon=True).start()

    def _start_simulator(self) -> None:
        from llm.simulator import SimulatorConfig, start_in_thread

        key = "sim-" + secrets.token_urlsafe(16)
        running = start_in_thread(
            SimulatorConfig(latency_ms=settings.SIMULATOR_LATENCY_MS, api_key=key)
        )
        settings.ANTHROPIC_BASE_URL = running.url
        settings.ANTHROPIC_API_KEY = key
        self.stdout.write(
            f"ANTHROPIC_SIMULATOR is on: claude-4-6 is answered by the built-in simulator at "
            f"{running.url} ({settings.SIMULATOR_LATENCY_MS} ms per token)."
        )
