"""`manage.py recover`: settle turns whose process died (serve also does this by itself)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from conversations.endings import recover_stale_turns


class Command(BaseCommand):
    help = "Mark turns whose process died as interrupted and settle their reservations."
    # Recovery needs only the database, not a working provider configuration.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--stale-after", type=int, default=None, help="seconds without a sign of life"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        recovered = recover_stale_turns(stale_after=options["stale_after"])
        self.stdout.write(f"Recovered {recovered} interrupted turn(s).")
