"""Any OpenAI-compatible chat completions server: vLLM, llama.cpp's server, Ollama, ..."""

from __future__ import annotations

import json
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

# OpenAI's finish reasons, in the Anthropic words the rest of the app uses.
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "content_filter": "refusal",
    "tool_calls": "tool_use",
}


def _error(status: int, headers: httpx.Headers, body: bytes) -> StreamError:
    message, error_type, code = "", "", ""
    try:
        error = json.loads(body).get("error") or {}
        if isinstance(error, str):
            message = error
        else:
            message = str(error.get("message", ""))
            error_type = str(error.get("type") or "")
            code = str(error.get("code") or "")
    except (ValueError, AttributeError):
        message = body[:500].decode("utf-8", "replace")
    wait = retry_after(headers)
    kind = STATUS_KINDS.get(status) or (ErrorKind.SERVER if status >= 500 else ErrorKind.UNKNOWN)
    if kind is ErrorKind.RATE_LIMIT and code == "insufficient_quota":
        kind = ErrorKind.BILLING
    if code == "context_length_exceeded":
        kind = ErrorKind.CONTEXT_TOO_LONG
    return StreamError(
        kind=kind,
        message=message or f"HTTP {status}",
        status=status,
        error_type=error_type or code,
        retry_after=wait,
        request_id=headers.get("x-request-id", ""),
    )


@dataclass
class OpenAIConfig(HttpConfig):
    """`base_url` goes up to and including /v1, e.g. http://127.0.0.1:8080/v1."""


class OpenAIProvider(HttpProvider):
    name = "openai"

    config: OpenAIConfig

    @staticmethod
    def body(request: ChatRequest) -> dict[str, Any]:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        body: dict[str, Any] = {
            "model": request.model,
            "messages": messages,
            "max_tokens": request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return body

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        headers = {"accept": "text/event-stream"}
        if self.config.api_key:
            headers["authorization"] = f"Bearer {self.config.api_key}"
        try:
            async with aconnect_sse(
                self._client, "POST", "chat/completions", json=self.body(request), headers=headers
            ) as source:
                response = source.response
                if response.status_code != 200:
                    yield _error(response.status_code, response.headers, await response.aread())
                    return
                request_id = response.headers.get("x-request-id", "")
                async for event in _parse_chunks(source.aiter_sse(), request_id):
                    yield event
        except (httpx.TransportError, httpx.StreamError) as exc:
            yield transport_error(exc)
        except SSEError as exc:
            yield StreamError(kind=ErrorKind.MALFORMED, message=f"Not an event stream: {exc}")


async def _parse_chunks(sse_events: AsyncIterator[Any], request_id: str) -> AsyncIterator[Event]:
    """Turn the stream's chunks into normalised events. It ends with StreamEnd, or with a
    StreamError when a chunk is unreadable or is an error, or when the stream stops without
    a finish reason (the connection broke: "[DONE]" alone does not make a reply whole)."""
    started = False
    finish: str | None = None
    async for sse in sse_events:
        if sse.data == "[DONE]":
            break
        try:
            chunk = json.loads(sse.data)
        except ValueError:
            yield StreamError(
                kind=ErrorKind.MALFORMED,
                message=f"Unreadable chunk: {sse.data[:200]!r}",
                request_id=request_id,
            )
            return
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk:
            error = chunk["error"] if isinstance(chunk["error"], dict) else {}
            yield StreamError(
                kind=ErrorKind.SERVER,
                message=str(error.get("message", chunk["error"])),
                error_type=str(error.get("type", "")),
                request_id=request_id,
            )
            return
        if not started:
            started = True
            yield StreamStarted(
                request_id=request_id or str(chunk.get("id", "")),
                model=str(chunk.get("model", "")),
            )
        for choice in chunk.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                yield TextDelta(text)
            finish = choice.get("finish_reason") or finish
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            yield Usage(
                input_tokens=usage.get("prompt_tokens"),
                output_tokens=usage.get("completion_tokens"),
            )
    if finish is None:
        yield StreamError(
            kind=ErrorKind.CONNECTION,
            message="The stream ended without a finish reason.",
            request_id=request_id,
        )
        return
    yield StreamEnd(stop_reason=_STOP_REASONS.get(finish, finish))
