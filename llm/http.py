"""What the HTTP providers share: the client, retry-after, transport failures."""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx

from .base import ErrorKind, StreamError


def http_client(base_url: str, *, connect_timeout: float, read_timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/") + "/",
        timeout=httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=connect_timeout, pool=connect_timeout
        ),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
    )


# What an HTTP status means when nothing more specific is known (Anthropic's error.type
# comes first where there is one).
STATUS_KINDS = {
    400: ErrorKind.INVALID_REQUEST,
    401: ErrorKind.AUTHENTICATION,
    402: ErrorKind.BILLING,
    403: ErrorKind.PERMISSION,
    404: ErrorKind.NOT_FOUND,
    408: ErrorKind.TIMEOUT,
    413: ErrorKind.REQUEST_TOO_LARGE,
    429: ErrorKind.RATE_LIMIT,
    500: ErrorKind.SERVER,
    502: ErrorKind.SERVER,
    503: ErrorKind.OVERLOADED,
    504: ErrorKind.TIMEOUT,
    529: ErrorKind.OVERLOADED,
}


@dataclass
class HttpConfig:
    """Where an HTTP provider is and how long to wait for it."""

    base_url: str
    api_key: str = ""
    connect_timeout: float = 10.0
    read_timeout: float = 60.0


class HttpProvider:
    """What every provider over HTTP has: one connection pool, made from its config."""

    name = "http"

    def __init__(self, config: HttpConfig, *, client: httpx.AsyncClient | None = None):
        self.config = config
        self._client = client or http_client(
            config.base_url,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
        )

    async def aclose(self) -> None:
        await self._client.aclose()


# No upstream pause is taken longer than this, whatever a retry-after says: "1e999" or a
# typo must not stop every worker's requests for good.
MAX_RETRY_AFTER_SECONDS = 600.0


def retry_after(headers: httpx.Headers) -> float | None:
    """The retry-after header in seconds, within 0 and MAX_RETRY_AFTER_SECONDS; None if
    absent or unreadable (an HTTP date is read as absent: the caller backs off itself)."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER_SECONDS, max(0.0, seconds))


def transport_error(exc: Exception) -> StreamError:
    """A timeout or a broken connection, as a normalised error."""
    kind = ErrorKind.TIMEOUT if isinstance(exc, httpx.TimeoutException) else ErrorKind.CONNECTION
    return StreamError(kind=kind, message=f"{type(exc).__name__}: {exc}")
