"""One streaming interface for every model provider.

A provider turns a `ChatRequest` into an async stream of normalised events. It never raises
for an upstream failure: HTTP errors before the stream, errors sent as events inside it,
broken connections and timeouts all arrive as one final `StreamError`, so the caller has a
single place that decides what the user sees. This module knows nothing of Django.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # "user" or "assistant"
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: list[ChatMessage]
    max_tokens: int
    system: str = ""
    temperature: float | None = None


class ErrorKind(enum.StrEnum):
    """What went wrong, independent of the provider's own words for it."""

    AUTHENTICATION = "authentication"  # 401
    PERMISSION = "permission"  # 403
    NOT_FOUND = "not_found"  # 404: wrong path or unknown model
    INVALID_REQUEST = "invalid_request"  # 400
    REQUEST_TOO_LARGE = "request_too_large"  # 413
    CONTEXT_TOO_LONG = "context_too_long"  # 400: the prompt does not fit the context window
    BILLING = "billing"  # 402, credit too low, usage limits reached
    RATE_LIMIT = "rate_limit"  # 429 with retry-after
    SPEND_LIMIT = "spend_limit"  # 429 without retry-after: the upstream's spend cap
    SERVER = "server"  # 500 api_error
    OVERLOADED = "overloaded"  # 529, or an overloaded_error event
    TIMEOUT = "timeout"  # 504, or our own timeouts
    CONNECTION = "connection"  # refused, reset, broken mid-stream
    MALFORMED = "malformed"  # a response we cannot parse
    UNKNOWN = "unknown"

    @property
    def retryable(self) -> bool:
        return self in RETRYABLE_KINDS


RETRYABLE_KINDS = frozenset(
    {
        ErrorKind.RATE_LIMIT,
        ErrorKind.SERVER,
        ErrorKind.OVERLOADED,
        ErrorKind.TIMEOUT,
        ErrorKind.CONNECTION,
    }
)


@dataclass(frozen=True, slots=True)
class Queued:
    """The request waits for the model: `position` requests are ahead of it."""

    position: int


@dataclass(frozen=True, slots=True)
class StreamStarted:
    """The upstream accepted the request (and gave it this id)."""

    request_id: str = ""
    model: str = ""


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts so far. Cumulative: a later Usage replaces an earlier one."""

    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The reply ended normally. `stop_reason` is the provider's, normalised to
    end_turn / max_tokens / stop_sequence / refusal / other values passed through."""

    stop_reason: str


@dataclass(frozen=True, slots=True)
class StreamError:
    kind: ErrorKind
    message: str
    status: int | None = None
    error_type: str = ""
    retry_after: float | None = None
    request_id: str = ""
    details: dict[str, object] = field(default_factory=dict)

    @property
    def retryable(self) -> bool:
        return self.kind.retryable


Event = Queued | StreamStarted | TextDelta | Usage | StreamEnd | StreamError


class Provider(Protocol):
    name: str

    def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        """Stream a reply. Ends after exactly one StreamEnd or StreamError."""
        ...

    async def aclose(self) -> None: ...
