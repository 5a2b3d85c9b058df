"""The Anthropic Messages API (and the claude-4-6 simulator, which speaks it)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse

from .base import (
    ChatRequest,
    ErrorKind,
    Event,
    StreamEnd,
    StreamError,
    StreamStarted,
    TextDelta,
    Usage,
)
from .http import STATUS_KINDS, HttpConfig, HttpProvider, retry_after, transport_error

log = logging.getLogger(__name__)

_TYPE_KINDS = {
    "authentication_error": ErrorKind.AUTHENTICATION,
    "permission_error": ErrorKind.PERMISSION,
    "not_found_error": ErrorKind.NOT_FOUND,
    "invalid_request_error": ErrorKind.INVALID_REQUEST,
    "request_too_large": ErrorKind.REQUEST_TOO_LARGE,
    "billing_error": ErrorKind.BILLING,
    "rate_limit_error": ErrorKind.RATE_LIMIT,
    "api_error": ErrorKind.SERVER,
    "overloaded_error": ErrorKind.OVERLOADED,
    "timeout_error": ErrorKind.TIMEOUT,
}
# The two invalid_request_error messages that really mean "out of money".
_BILLING_PHRASES = ("credit balance is too low", "reached your specified api usage limits")


def classify_error(
    *,
    status: int | None,
    error_type: str,
    message: str,
    retry_after: float | None,
    details: dict[str, Any] | None = None,
) -> ErrorKind:
    """Map an upstream error to a kind: by `error.type` first, the HTTP status second."""
    kind = _TYPE_KINDS.get(error_type) or STATUS_KINDS.get(status or 0)
    if kind is None:
        if status is not None and status >= 500:
            return ErrorKind.SERVER
        return ErrorKind.UNKNOWN
    if kind is ErrorKind.INVALID_REQUEST and any(
        phrase in message.lower() for phrase in _BILLING_PHRASES
    ):
        return ErrorKind.BILLING
    if kind is ErrorKind.INVALID_REQUEST and "prompt is too long" in message.lower():
        return ErrorKind.CONTEXT_TOO_LONG
    if kind is ErrorKind.RATE_LIMIT:
        code = (details or {}).get("error_code")
        # A spend cap comes as a 429 without retry-after: waiting will not help.
        if code == "enforced_spend_limit_reached" or retry_after is None:
            return ErrorKind.SPEND_LIMIT
    return kind


def error_from_response(status: int, headers: httpx.Headers, body: bytes) -> StreamError:
    request_id = headers.get("request-id", "")
    error_type, message = "", ""
    details: object = {}
    try:
        payload = json.loads(body)
        error = payload.get("error") or {}
        error_type = str(error.get("type", ""))
        message = str(error.get("message", ""))
        details = error.get("details") or {}
        request_id = request_id or str(payload.get("request_id", ""))
    except (ValueError, AttributeError, RecursionError):
        message = body[:500].decode("utf-8", "replace")
    wait = retry_after(headers)
    kind = classify_error(
        status=status,
        error_type=error_type,
        message=message,
        retry_after=wait,
        details=details if isinstance(details, dict) else {},
    )
    return StreamError(
        kind=kind,
        message=message or f"HTTP {status}",
        status=status,
        error_type=error_type,
        retry_after=wait,
        request_id=request_id,
        details=details if isinstance(details, dict) else {},
    )


@dataclass
class AnthropicConfig(HttpConfig):
    version: str = "2023-06-01"


class AnthropicProvider(HttpProvider):
    """Streams from `POST {base_url}/v1/messages` with SSE parsed by httpx-sse."""

    name = "anthropic"

    config: AnthropicConfig

    def _headers(self) -> dict[str, str]:
        return {
            "x-api-key": self.config.api_key,
            "anthropic-version": self.config.version,
            "content-type": "application/json",
            "accept": "text/event-stream",
        }

    @staticmethod
    def body(request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
        }
        if request.system:
            body["system"] = request.system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return body

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        try:
            async with aconnect_sse(
                self._client,
                "POST",
                "v1/messages",
                json=self.body(request),
                headers=self._headers(),
            ) as source:
                response = source.response
                if response.status_code != 200:
                    body = await response.aread()
                    yield error_from_response(response.status_code, response.headers, body)
                    return
                request_id = response.headers.get("request-id", "")
                async for event in _parse_events(source.aiter_sse(), request_id):
                    yield event
                    if isinstance(event, StreamEnd | StreamError):
                        return
                yield StreamError(
                    kind=ErrorKind.CONNECTION,
                    message="The stream ended before message_stop.",
                    request_id=request_id,
                )
        except httpx.DecodingError as exc:  # a body its content-encoding cannot undo
            yield StreamError(kind=ErrorKind.MALFORMED, message=f"Undecodable response: {exc}")
        except (httpx.TransportError, httpx.StreamError) as exc:
            yield transport_error(exc)
        except SSEError as exc:
            yield StreamError(kind=ErrorKind.MALFORMED, message=f"Not an event stream: {exc}")


async def _parse_events(sse_events: AsyncIterator[Any], request_id: str) -> AsyncIterator[Event]:
    """Turn Anthropic's SSE events into normalised ones; unknown ones are skipped, and so
    are fields of the wrong type (an upstream's bug must not become ours)."""
    input_tokens: int | None = None
    stop_reason: str | None = None
    async for sse in sse_events:
        if sse.event == "ping":
            continue
        try:
            data = json.loads(sse.data) if sse.data else {}
        except (ValueError, RecursionError):
            yield StreamError(
                kind=ErrorKind.MALFORMED,
                message=f"Unreadable {sse.event or 'message'} event: {sse.data[:200]!r}",
                request_id=request_id,
            )
            return
        if not isinstance(data, dict):
            continue
        kind = data.get("type") or sse.event
        if kind == "content_block_delta":
            delta = _dict(data.get("delta"))
            text = delta.get("text")
            if delta.get("type") == "text_delta" and text and isinstance(text, str):
                yield TextDelta(text)
        elif kind == "message_start":
            message = _dict(data.get("message"))
            input_tokens = _input_tokens(_dict(message.get("usage")))
            yield StreamStarted(request_id=request_id, model=str(message.get("model", "")))
            if input_tokens is not None:
                yield Usage(input_tokens=input_tokens)
        elif kind == "message_delta":
            reason = _dict(data.get("delta")).get("stop_reason")
            stop_reason = reason if reason and isinstance(reason, str) else stop_reason
            usage = _dict(data.get("usage"))
            # Usage here is cumulative: it replaces what came before.
            input_tokens = _input_tokens(usage) or input_tokens
            yield Usage(input_tokens=input_tokens, output_tokens=_count(usage.get("output_tokens")))
        elif kind == "message_stop":
            yield StreamEnd(stop_reason=stop_reason or "end_turn")
        elif kind == "error":
            error = _dict(data.get("error"))
            error_type = str(error.get("type", ""))
            error_text = str(error.get("message", ""))
            yield StreamError(
                # Classified by error.type: the HTTP status was 200.
                kind=classify_error(
                    status=None,
                    error_type=error_type,
                    message=error_text,
                    retry_after=0.0,
                    details=_dict(error.get("details")),
                ),
                message=error_text or error_type,
                error_type=error_type,
                request_id=request_id,
            )
        # content_block_start/stop, thinking and tool deltas and unknown events: ignored.


def _input_tokens(usage: dict[str, Any]) -> int | None:
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    values = [count for k in keys if (count := _count(usage.get(k))) is not None]
    return sum(values) if values else None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _count(value: object) -> int | None:
    """A token count as reported, if it is one: an integer from 0 to 2**31 - 1 (no
    request comes near that); anything else counts as not reported."""
    if type(value) is int and 0 <= value < 2**31:
        return value
    return None
