"""The claude-4-6 simulator: an ASGI application speaking the Anthropic Messages protocol.

It behaves as the model card describes the model: about 200 ms per token, 60 requests per
minute (a token bucket refilled continuously; beyond it a 429 with retry-after), a $100
daily spend limit, 4096 output tokens at most, a 128k context window, 401 on a wrong key
and 404 on any model slug but its own. Faults are injected with directives (replies.py).

Like the real API it takes the key as `x-api-key` or as `Authorization: Bearer` (the
official SDK sends the second, 2.15.0 at least) and any `anthropic-version` that is a date.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .replies import Directives, count_tokens, parse_directives, reply_text, tokenize

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
ERROR_MESSAGES = {
    400: "Your request was malformed.",
    401: "invalid x-api-key",
    402: "Your account has no credit left.",
    403: "Your API key does not have permission to use the specified resource.",
    404: "The requested resource could not be found.",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "Number of requests has exceeded your rate limit. Please try again later.",
    500: "Internal server error",
    504: "Request timed out",
    529: "Overloaded",
}
MAX_BODY_BYTES = 32 * 1024 * 1024
# Which headers a simulator takes the key from: "either" (the real API's way), or only one,
# to stand for a gateway that knows one of them (tests use it to prove what a client sends).
AUTH_MODES = ("either", "x-api-key", "bearer")
# The real API's words for a key it refuses, by the header it came in.
_INVALID_KEY = {"x-api-key": "invalid x-api-key", "bearer": "Invalid bearer token"}
_MISSING_KEY = {
    "either": "x-api-key header is required",
    "x-api-key": "x-api-key header is required",
    "bearer": "Authorization header with a Bearer token is required",
}
_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass
class SimulatorConfig:
    model: str = "claude-4-6"
    latency_ms: float = 200.0
    rpm: int = 60
    burst: int | None = None  # bucket size; defaults to rpm
    api_key: str | None = None  # None: any non-empty key is accepted
    auth: str = "either"  # one of AUTH_MODES
    max_output_tokens: int = 4096
    context_window: int = 128_000
    input_price_micros_per_1k: int = 1000  # $0.001 per 1k input tokens
    output_price_micros_per_1k: int = 2000  # $0.002 per 1k output tokens
    daily_limit_micros: int = 100_000_000  # $100.00, hard
    ping_every: int = 20


@dataclass
class SimulatorStats:
    requests: int = 0
    rate_limited: int = 0
    completed: int = 0
    spent_micros: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    # When the latest Messages request arrived (Unix seconds, its headers read): a
    # benchmark in another process times what the app does before a request leaves.
    last_request_at: float = 0.0
    # Which credential headers requests carried ("x-api-key", "bearer", "both" or "none"),
    # counted, and the latest anthropic-version: what a client really sends, never the key.
    credentials: dict[str, int] = field(default_factory=dict)
    last_version: str = ""


class TokenBucket:
    def __init__(self, rate_per_second: float, capacity: float):
        self.rate = rate_per_second
        self.capacity = capacity
        self.tokens = capacity
        self.updated = time.monotonic()

    def take(self) -> float:
        """Take one token; 0.0 when granted, else the seconds until one is free."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class HttpError(Exception):
    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.error_type = error_type or ERROR_TYPES.get(status, "api_error")
        self.message = message or ERROR_MESSAGES.get(status, "Error")
        self.headers = headers or {}
        self.details = details


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Simulator:
    """The ASGI application. One instance keeps its rate bucket, spend and stats."""

    def __init__(self, config: SimulatorConfig | None = None):
        self.config = config or SimulatorConfig()
        if self.config.auth not in AUTH_MODES:
            raise ValueError(f"auth must be one of {AUTH_MODES}, not {self.config.auth!r}")
        rate = self.config.rpm / 60.0
        self.bucket = TokenBucket(rate, float(self.config.burst or self.config.rpm))
        self.stats = SimulatorStats()
        self._spend_day = datetime.now(UTC).date()
        self._failures: dict[str, int] = {}

    # --- ASGI ----------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        arrived = time.time()
        request_id = "req_" + uuid.uuid4().hex[:24]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await self._read_body(receive)
            path, method = scope["path"], scope["method"]
            if path == "/" and method in {"GET", "HEAD"}:
                await self._json(send, 200, {"ok": True, "model": self.config.model}, request_id)
            elif path == "/stats" and method == "GET":
                # What the simulator saw, for tests and benchmarks in other processes.
                await self._json(send, 200, asdict(self.stats), request_id)
            elif path == "/v1/messages" and method == "POST":
                self.stats.last_request_at = arrived
                await self._messages(send, receive, headers, body, request_id)
            elif path == "/v1/messages/count_tokens" and method == "POST":
                await self._count_tokens(send, headers, body, request_id)
            else:
                raise HttpError(404, f"Not found: {method} {path}")
        except HttpError as error:
            self.stats.by_status[error.status] = self.stats.by_status.get(error.status, 0) + 1
            payload: dict[str, Any] = {
                "type": "error",
                "error": {"type": error.error_type, "message": error.message},
                "request_id": request_id,
            }
            if error.details:
                payload["error"]["details"] = error.details
            await self._json(send, error.status, payload, request_id, error.headers)

    async def _read_body(self, receive: Any) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise HttpError(413)
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _json(
        self,
        send: Any,
        status: int,
        payload: dict[str, Any],
        request_id: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        body = json.dumps(payload).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"request-id", request_id.encode()),
        ]
        headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    # --- request checks ------------------------------------------------------------------
    def _authenticate(self, headers: dict[str, str]) -> str:
        """Accept the key from whichever header the mode allows; one that matches is enough.

        The 401 names the header the refused key came in, as the real API does: a client
        that sent a Bearer token is not told about an x-api-key it never sent. Returns the
        header the accepted key came in ("x-api-key" or "bearer")."""
        presented: dict[str, str] = {}
        if headers.get("x-api-key"):
            presented["x-api-key"] = headers["x-api-key"]
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            presented["bearer"] = token.strip()
        seen = "both" if len(presented) == 2 else next(iter(presented), "none")
        self.stats.credentials[seen] = self.stats.credentials.get(seen, 0) + 1
        mode = self.config.auth
        usable = {k: v for k, v in presented.items() if mode in {"either", k}}
        if not usable:
            raise HttpError(401, _MISSING_KEY[mode])
        for header, key in usable.items():
            if self.config.api_key is None or key == self.config.api_key:
                return header
        raise HttpError(401, _INVALID_KEY[next(iter(usable))])

    def _check_version(self, headers: dict[str, str]) -> None:
        """Any date is a version, as the real API takes the one each SDK release pins (the
        provider sends 2023-06-01, anthropic 2.15.0 sends 2026-10-21). A missing header is
        let through: curl and benchmarks may leave it out, and nothing here depends on it."""
        version = headers.get("anthropic-version")
        if version is None:
            return
        try:
            if not _VERSION.fullmatch(version):
                raise ValueError(version)
            date.fromisoformat(version)
        except ValueError:
            raise HttpError(
                400, f"anthropic-version: {version[:40]!r} is not a valid version (YYYY-MM-DD)"
            ) from None
        self.stats.last_version = version

    def _parse(self, body: bytes, *, need_max_tokens: bool) -> dict[str, Any]:
        try:
            payload = json.loads(body)
        except ValueError:
            raise HttpError(
                400, "There was an issue with the format of the request body."
            ) from None
        if not isinstance(payload, dict):
            raise HttpError(400, "The request body must be a JSON object.")
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise HttpError(400, "model: Field required")
        if model != self.config.model:
            raise HttpError(404, f"model: {model}")
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            raise HttpError(400, "messages: at least one message is required")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in {"user", "assistant"}:
                raise HttpError(
                    400, f"messages.{index}.role: Input should be 'user' or 'assistant'"
                )
            if not isinstance(message.get("content"), str | list):
                raise HttpError(400, f"messages.{index}.content: Field required")
        last = messages[-1]
        if last["role"] == "assistant" and self._text_of(last["content"]) != (
            self._text_of(last["content"]).rstrip()
        ):
            raise HttpError(400, "final assistant content cannot end with trailing whitespace")
        if need_max_tokens:
            max_tokens = payload.get("max_tokens")
            if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
                raise HttpError(400, "max_tokens: Field required and must be a positive integer")
            if max_tokens > self.config.max_output_tokens:
                raise HttpError(
                    400,
                    f"max_tokens: {max_tokens} > {self.config.max_output_tokens}, which is the "
                    f"maximum allowed number of output tokens for {self.config.model}",
                )
        return payload

    @staticmethod
    def _text_of(content: Any) -> str:
        if isinstance(content, str):
            return content
        return "".join(
            block.get("text", "")
            for block in content
            if isinstance(block, dict) and block.get("type") == "text"
        )

    def _input_tokens(self, payload: dict[str, Any]) -> int:
        system = payload.get("system") or ""
        total = count_tokens(self._text_of(system)) if system else 0
        for message in payload["messages"]:
            total += 3 + count_tokens(self._text_of(message["content"]))
        return max(1, total)

    def _last_user_text(self, payload: dict[str, Any]) -> str:
        for message in reversed(payload["messages"]):
            if message["role"] == "user":
                return self._text_of(message["content"])
        return ""

    def _after_prefill(self, payload: dict[str, Any], text: str) -> str:
        """What is left of the reply after an assistant prefill (the last message, when it
        is the assistant's): the model continues its own words from there."""
        last = payload["messages"][-1]
        if last["role"] != "assistant":
            return text
        prefill = self._text_of(last["content"])
        return text[len(prefill) :] if text.startswith(prefill) else text

    def _price(self, input_tokens: int, output_tokens: int) -> int:
        return (
            input_tokens * self.config.input_price_micros_per_1k
            + output_tokens * self.config.output_price_micros_per_1k
        ) // 1000

    def _check_spend(self) -> None:
        today = datetime.now(UTC).date()
        if today != self._spend_day:
            self._spend_day, self.stats.spent_micros = today, 0
        if self.stats.spent_micros >= self.config.daily_limit_micros:
            resets = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
            raise HttpError(
                429,
                "You have reached your specified API usage limits. You will regain access on "
                f"{resets:%Y-%m-%d at %H:%M} UTC.",
                details={"error_code": "enforced_spend_limit_reached"},
            )

    def _rate_limit(self) -> dict[str, str]:
        wait = self.bucket.take()
        reset = datetime.now(UTC) + timedelta(seconds=wait)
        headers = {
            "anthropic-ratelimit-requests-limit": str(self.config.rpm),
            "anthropic-ratelimit-requests-remaining": str(int(self.bucket.tokens)),
            "anthropic-ratelimit-requests-reset": reset.isoformat().replace("+00:00", "Z"),
        }
        if wait > 0:
            self.stats.rate_limited += 1
            headers["retry-after"] = str(max(1, math.ceil(wait)))
            raise HttpError(429, headers=headers)
        return headers

    def _injected_error(self, directives: Directives, prompt: str, key_header: str) -> None:
        error = directives.error
        if error is None:
            return
        if directives.error_times is not None:
            key = hashlib.sha256(prompt.encode()).hexdigest()
            seen = self._failures.get(key, 0)
            if seen >= directives.error_times:
                return
            self._failures[key] = seen + 1
        if error == "spend-limit":
            raise HttpError(
                429,
                "You have reached your specified workspace spend limit.",
                details={"error_code": "enforced_spend_limit_reached"},
            )
        if error == "context":
            raise HttpError(
                400,
                f"prompt is too long: {self.config.context_window + 1} tokens > "
                f"{self.config.context_window} maximum",
            )
        if error == "credit":
            raise HttpError(
                400, "Your credit balance is too low to access the Anthropic API.", error_type=None
            )
        try:
            status = int(error)
        except ValueError:
            return
        headers = {"retry-after": f"{directives.retry_after:g}"} if status == 429 else None
        # An injected 401 stands for a key that stopped working: worded for its header.
        message = _INVALID_KEY[key_header] if status == 401 else None
        raise HttpError(status, message, headers=headers)

    # --- endpoints -----------------------------------------------------------------------
    async def _count_tokens(
        self, send: Any, headers: dict[str, str], body: bytes, request_id: str
    ) -> None:
        self._authenticate(headers)
        self._check_version(headers)
        payload = self._parse(body, need_max_tokens=False)
        await self._json(send, 200, {"input_tokens": self._input_tokens(payload)}, request_id)

    async def _messages(
        self, send: Any, receive: Any, headers: dict[str, str], body: bytes, request_id: str
    ) -> None:
        self.stats.requests += 1
        key_header = self._authenticate(headers)
        self._check_version(headers)
        payload = self._parse(body, need_max_tokens=True)
        limit_headers = self._rate_limit()
        self._check_spend()
        prompt = self._last_user_text(payload)
        directives = parse_directives(prompt)
        self._injected_error(directives, prompt, key_header)
        input_tokens = self._input_tokens(payload)
        max_tokens = payload["max_tokens"]
        if input_tokens + max_tokens > self.config.context_window:
            raise HttpError(
                400,
                f"prompt is too long: {input_tokens} tokens > "
                f"{self.config.context_window - max_tokens} maximum",
            )
        text = reply_text(prompt, tokens=directives.tokens, html=directives.html)
        tokens = tokenize(self._after_prefill(payload, text))
        stop_reason = "end_turn"
        if len(tokens) > max_tokens:
            tokens, stop_reason = tokens[:max_tokens], "max_tokens"
        latency = (
            directives.latency_ms if directives.latency_ms is not None else self.config.latency_ms
        ) / 1000.0
        message_id = "msg_" + uuid.uuid4().hex[:24]
        if payload.get("stream"):
            await self._stream(
                send,
                receive,
                request_id=request_id,
                message_id=message_id,
                limit_headers=limit_headers,
                tokens=tokens,
                input_tokens=input_tokens,
                stop_reason=stop_reason,
                latency=latency,
                directives=directives,
            )
        else:
            await asyncio.sleep(directives.slow_first + latency * len(tokens))
            self._charge(input_tokens, len(tokens))
            message = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": "".join(tokens)}],
                "model": self.config.model,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": len(tokens)},
            }
            await self._json(send, 200, message, request_id, limit_headers)

    def _charge(self, input_tokens: int, output_tokens: int) -> None:
        self.stats.spent_micros += self._price(input_tokens, output_tokens)
        self.stats.completed += 1
        self.stats.by_status[200] = self.stats.by_status.get(200, 0) + 1

    async def _stream(
        self,
        send: Any,
        receive: Any,
        *,
        request_id: str,
        message_id: str,
        limit_headers: dict[str, str],
        tokens: list[str],
        input_tokens: int,
        stop_reason: str,
        latency: float,
        directives: Directives,
    ) -> None:
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"request-id", request_id.encode()),
        ] + [(k.encode(), v.encode()) for k, v in limit_headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

        async def emit(*chunks: bytes) -> None:
            await send({"type": "http.response.body", "body": b"".join(chunks), "more_body": True})

        message: dict[str, Any] = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": self.config.model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        }
        await emit(
            _sse("message_start", {"type": "message_start", "message": message}),
            _sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            _sse("ping", {"type": "ping"}),
        )
        # The request's body is read; the next message from the server is the client
        # going away. Like the real API, stop generating (and charging) when it does.
        gone = asyncio.Event()

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch_disconnect())
        sent = 0
        try:
            if directives.slow_first:
                await self._sleep_unless(gone, directives.slow_first)
            for token in tokens:
                if gone.is_set():
                    return
                if directives.midstream_error and sent == directives.midstream_after:
                    await self._midstream_error(send, directives.midstream_error, request_id)
                    return
                if directives.break_after is not None and sent >= directives.break_after:
                    # Return without finishing the response: the server drops the connection.
                    return
                if latency:
                    await self._sleep_unless(gone, latency)
                text = f"⟦{time.time():.6f}⟧{token}" if directives.stamp else token
                delta = {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text},
                }
                if self.config.ping_every and sent and sent % self.config.ping_every == 0:
                    await emit(_sse("ping", {"type": "ping"}), _sse("content_block_delta", delta))
                else:
                    await emit(_sse("content_block_delta", delta))
                sent += 1
            if directives.midstream_error and sent == directives.midstream_after:
                await self._midstream_error(send, directives.midstream_error, request_id)
                return
            if directives.break_after is not None and sent >= directives.break_after:
                return
            await emit(
                _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
                _sse(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                        "usage": {"input_tokens": input_tokens, "output_tokens": sent},
                    },
                ),
                _sse("message_stop", {"type": "message_stop"}),
            )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            # Whatever ended the stream (completion, a fault, the client going away), the
            # tokens generated so far are what this request cost.
            self._charge(input_tokens, sent)

    @staticmethod
    async def _sleep_unless(gone: asyncio.Event, seconds: float) -> None:
        if gone.is_set():
            return
        try:
            await asyncio.wait_for(gone.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _midstream_error(self, send: Any, error_type: str, request_id: str) -> None:
        status = {v: k for k, v in ERROR_TYPES.items()}.get(error_type, 500)
        payload = {
            "type": "error",
            "error": {"type": error_type, "message": ERROR_MESSAGES.get(status, error_type)},
            "request_id": request_id,
        }
        await send(
            {"type": "http.response.body", "body": _sse("error", payload), "more_body": False}
        )
