"""The error catalog: for each kind of failure, what the user reads and whether it is retried.

Users get plain words, never a status code or JSON; admins get the upstream details on the
message and in the logs. One entry per kind, so the wording lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm.base import ErrorKind, StreamError


@dataclass(frozen=True)
class CatalogEntry:
    user_message: str
    retry_offered: bool  # whether the page offers a Retry button


CATALOG: dict[str, CatalogEntry] = {
    ErrorKind.AUTHENTICATION: CatalogEntry(
        "The assistant is unavailable right now. An administrator has been notified.", False
    ),
    ErrorKind.PERMISSION: CatalogEntry(
        "The assistant is unavailable right now. An administrator has been notified.", False
    ),
    ErrorKind.NOT_FOUND: CatalogEntry(
        "This model is unavailable. Choose another model or ask an administrator.", False
    ),
    ErrorKind.INVALID_REQUEST: CatalogEntry(
        "The request could not be processed. Try rephrasing or shortening your message.", True
    ),
    ErrorKind.REQUEST_TOO_LARGE: CatalogEntry(
        "This conversation is too large to send. Start a new chat or shorten your message.",
        False,
    ),
    ErrorKind.BILLING: CatalogEntry(
        "The service's credit with the model provider is exhausted. An administrator has "
        "been notified.",
        False,
    ),
    ErrorKind.RATE_LIMIT: CatalogEntry(
        "The model service is busy right now. Please try again in a moment.", True
    ),
    ErrorKind.SPEND_LIMIT: CatalogEntry(
        "The service has reached its spending limit with the model provider. An "
        "administrator has been notified.",
        False,
    ),
    ErrorKind.SERVER: CatalogEntry("The model service had a hiccup. Please try again.", True),
    ErrorKind.OVERLOADED: CatalogEntry(
        "The model service is overloaded right now. Please try again in a moment.", True
    ),
    ErrorKind.TIMEOUT: CatalogEntry("The model took too long to answer. Please try again.", True),
    ErrorKind.CONNECTION: CatalogEntry(
        "The connection to the model service was lost. Please try again.", True
    ),
    ErrorKind.MALFORMED: CatalogEntry(
        "The model service sent an answer we could not read. Please try again.", True
    ),
    ErrorKind.UNKNOWN: CatalogEntry("Something went wrong. Please try again.", True),
    "interrupted": CatalogEntry(
        "This reply was interrupted because the server restarted. Nothing more will be "
        "added to it.",
        True,
    ),
}


def entry_for(kind: str) -> CatalogEntry:
    return CATALOG.get(kind, CATALOG[ErrorKind.UNKNOWN])


def admin_detail(error: StreamError) -> str:
    """What admins see: status, upstream type and message, request id. Never a key."""
    parts = [f"kind={error.kind.value}"]
    if error.status is not None:
        parts.append(f"status={error.status}")
    if error.error_type:
        parts.append(f"type={error.error_type}")
    if error.request_id:
        parts.append(f"request_id={error.request_id}")
    parts.append(f"message={error.message}")
    return " ".join(parts)
