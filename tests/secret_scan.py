"""Everything the suite produces is scanned for the provider's key.

Installed once per test session (tests/conftest.py): every log record, every HTTP response
Django makes in this process (pages, partials, admin, exports, errors), every websocket
frame a consumer sends, every frame a test browser receives, and, at the end, every log
file a server process of the suite wrote. A hit is kept with where it was seen (the key
itself masked), and the session fails on any.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# The simulator key `manage.py serve` makes for itself (ANTHROPIC_SIMULATOR): "sim-" and 22
# characters of token_urlsafe(16). Servers the suite starts use one each.
SIMULATOR_KEY = re.compile(r"\bsim-[A-Za-z0-9_-]{22}\b")


@dataclass
class Hit:
    secret: str  # the secret's name, never its value
    where: str
    around: str  # the text around it, the secret masked

    def __str__(self) -> str:
        return f"{self.secret} in {self.where}: …{self.around}…"


@dataclass
class SecretScan:
    secrets: dict[str, str]  # name -> value
    patterns: dict[str, re.Pattern[str]] = field(
        default_factory=lambda: {"a simulator key": SIMULATOR_KEY}
    )
    hits: list[Hit] = field(default_factory=list)
    scanned: dict[str, int] = field(default_factory=dict)

    def check(self, where: str, text: str | bytes | None) -> None:
        if not text:
            return
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        self.scanned[where] = self.scanned.get(where, 0) + 1
        for name, secret in self.secrets.items():
            if secret in text:
                self._hit(name, where, text, text.index(secret), len(secret))
        for name, pattern in self.patterns.items():
            found = pattern.search(text)
            if found:
                self._hit(name, where, text, found.start(), found.end() - found.start())

    def check_files(self, paths: Iterable[Path]) -> None:
        for path in paths:
            self.check(f"file {path.name}", path.read_bytes())

    def _hit(self, name: str, where: str, text: str, start: int, length: int) -> None:
        around = text[max(0, start - 60) : start] + "[KEY]" + text[start + length : start + 60]
        self.hits.append(Hit(name, where, around))

    # --- hooks ------------------------------------------------------------------------
    def install(self) -> None:
        """Watch logs, Django's responses and the consumers' frames in this process."""
        from channels.generic.websocket import AsyncWebsocketConsumer
        from django.core.handlers.base import BaseHandler

        scan = self
        handler = _ScanHandler(self)
        logging.getLogger().addHandler(handler)

        get_response = BaseHandler.get_response
        get_response_async = BaseHandler.get_response_async
        send = AsyncWebsocketConsumer.send

        def checked_response(self, request):  # type: ignore[no-untyped-def]
            response = get_response(self, request)
            scan.check_response(request.path, response)
            return response

        async def checked_response_async(self, request):  # type: ignore[no-untyped-def]
            response = await get_response_async(self, request)
            scan.check_response(request.path, response)
            return response

        async def checked_send(self, text_data=None, bytes_data=None, close=False):  # type: ignore[no-untyped-def]
            scan.check("websocket frame", text_data)
            await send(self, text_data=text_data, bytes_data=bytes_data, close=close)

        BaseHandler.get_response = checked_response  # type: ignore[method-assign]
        BaseHandler.get_response_async = checked_response_async  # type: ignore[method-assign]
        AsyncWebsocketConsumer.send = checked_send  # type: ignore[method-assign]

    def check_response(self, path: str, response: object) -> None:
        headers = "\n".join(f"{k}: {v}" for k, v in response.items())  # type: ignore[attr-defined]
        self.check(f"response headers {path}", headers)
        if not getattr(response, "streaming", False):
            self.check(f"response {path}", response.content)  # type: ignore[attr-defined]

    def watch_browser(self, context_or_page: object) -> None:
        """Every websocket frame a test browser's context or page receives."""

        def on_websocket(socket: object) -> None:
            socket.on("framereceived", lambda payload: self.check("browser frame", payload))  # type: ignore[attr-defined]

        def on_page(page: object) -> None:
            page.on("websocket", on_websocket)  # type: ignore[attr-defined]

        if hasattr(context_or_page, "pages"):  # a context: each page it opens
            context_or_page.on("page", on_page)  # type: ignore[attr-defined]
        else:
            on_page(context_or_page)


class _ScanHandler(logging.Handler):
    def __init__(self, scan: SecretScan) -> None:
        super().__init__(level=logging.DEBUG)
        self.scan = scan
        self.setFormatter(logging.Formatter("%(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.scan.check(f"log {record.name}", self.format(record))
        except Exception:  # A scan must never break the code it watches.
            self.handleError(record)
