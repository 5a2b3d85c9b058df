"""`manage.py simulator`: the claude-4-6 simulator as a real HTTP server."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from llm.simulator import SimulatorConfig, serve_forever
from llm.simulator.app import AUTH_MODES


class Command(BaseCommand):
    help = "Serve the claude-4-6 simulator (Anthropic Messages API) over HTTP."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8100)
        parser.add_argument("--latency-ms", type=float, default=200.0, help="per token")
        parser.add_argument("--rpm", type=int, default=60, help="requests per minute")
        parser.add_argument("--burst", type=int, default=None, help="bucket size (default: rpm)")
        parser.add_argument("--api-key", default=None, help="the only key accepted")
        parser.add_argument(
            "--auth",
            choices=AUTH_MODES,
            default="either",
            help="where the key is read: x-api-key or Authorization: Bearer (either, by default)",
        )
        parser.add_argument("--daily-limit-usd", type=float, default=100.0)

    def handle(self, *args: Any, **options: Any) -> None:
        config = SimulatorConfig(
            latency_ms=options["latency_ms"],
            rpm=options["rpm"],
            burst=options["burst"],
            api_key=options["api_key"],
            auth=options["auth"],
            daily_limit_micros=round(options["daily_limit_usd"] * 1_000_000),
        )
        self.stdout.write(
            f"claude-4-6 simulator on http://{options['host']}:{options['port']} "
            f"({config.latency_ms:g} ms/token, {config.rpm} rpm)"
        )
        serve_forever(config, host=options["host"], port=options["port"])
