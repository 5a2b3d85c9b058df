"""The error catalog: for every way a reply can fail, in one place.

Each entry says what the user reads (plain words: never a status code, an error type or
JSON), what the page offers next (Retry, Continue or nothing), whether the failure is
retried by itself before any text is shown, and whether it costs anything. Admins see the
upstream details (`admin_detail`) on the message, on its usage records and in the logs,
with what to do about it. The provider's key appears in none of these.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from llm.base import ErrorKind, StreamError

# What a failure costs. NEVER: the upstream refused the request before doing any work, or
# nothing was sent at all. USED: the upstream accepted it, so the input is paid, and every
# token received is paid; nothing more.
NEVER = "never"
USED = "used"

RETRY = "retry"  # the page offers Retry: the same message again, as a new turn
CONTINUE = "continue"  # the page offers Continue: the same reply goes on


@dataclass(frozen=True)
class CatalogEntry:
    words: Promise  # what the user reads, translated when read
    retried: bool  # retried by itself before any text reached anyone
    billed: str  # NEVER or USED
    action: str = ""  # RETRY, CONTINUE or nothing
    admin_action: str = ""  # for admins: what to look at

    @property
    def user_message(self) -> str:
        return str(self.words)


_UNAVAILABLE = _("The assistant is unavailable right now. An administrator has been notified.")

CATALOG: dict[str, CatalogEntry] = {
    ErrorKind.AUTHENTICATION: CatalogEntry(
        _UNAVAILABLE, False, NEVER, admin_action="The provider refused the API key: check it."
    ),
    ErrorKind.PERMISSION: CatalogEntry(
        _UNAVAILABLE,
        False,
        NEVER,
        admin_action="The API key may not use this model or feature: check its permissions.",
    ),
    ErrorKind.NOT_FOUND: CatalogEntry(
        _("This model is unavailable. Choose another model or ask an administrator."),
        False,
        NEVER,
        admin_action="The provider does not know this model name: check the model catalog.",
    ),
    ErrorKind.INVALID_REQUEST: CatalogEntry(
        _("The request could not be processed. Try rephrasing or shortening your message."),
        False,
        NEVER,
        admin_action="The provider rejected the request's format: see its message.",
    ),
    ErrorKind.REQUEST_TOO_LARGE: CatalogEntry(
        _("This conversation is too large to send. Start a new chat or shorten your message."),
        False,
        NEVER,
        admin_action="The request body exceeded the provider's size limit.",
    ),
    ErrorKind.CONTEXT_TOO_LONG: CatalogEntry(
        _(
            "This conversation is too long for the model to read at once. Start a new chat, or "
            "send a shorter message."
        ),
        False,
        NEVER,
        admin_action="The prompt exceeded the context window: check the catalog's window.",
    ),
    ErrorKind.BILLING: CatalogEntry(
        _(
            "The service's credit with the model provider is exhausted. An administrator has "
            "been notified."
        ),
        False,
        NEVER,
        admin_action="The provider account is out of credit: top it up.",
    ),
    ErrorKind.RATE_LIMIT: CatalogEntry(
        _("The model service is busy right now. Please try again in a moment."),
        True,
        NEVER,
        RETRY,
        admin_action="The provider's rate limit was hit: check UPSTREAM_RPM against it.",
    ),
    ErrorKind.SPEND_LIMIT: CatalogEntry(
        _(
            "The service has reached its spending limit with the model provider. An "
            "administrator has been notified."
        ),
        False,
        NEVER,
        admin_action="The provider's spend limit was reached: check DAILY_CAP_USD against it.",
    ),
    ErrorKind.SERVER: CatalogEntry(
        _("The model service had a hiccup. Please try again."), True, USED, RETRY
    ),
    ErrorKind.OVERLOADED: CatalogEntry(
        _("The model service is overloaded right now. Please try again in a moment."),
        True,
        USED,
        RETRY,
    ),
    ErrorKind.TIMEOUT: CatalogEntry(
        _("The model took too long to answer. Please try again."),
        True,
        USED,
        RETRY,
        admin_action="See LLM_FIRST_TOKEN_TIMEOUT, LLM_TOKEN_TIMEOUT and LLM_TOTAL_TIMEOUT.",
    ),
    ErrorKind.CONNECTION: CatalogEntry(
        _("The connection to the model service was lost. Please try again."), True, USED, RETRY
    ),
    ErrorKind.MALFORMED: CatalogEntry(
        _("The model service sent an answer we could not read. Please try again."),
        False,
        USED,
        RETRY,
    ),
    ErrorKind.UNKNOWN: CatalogEntry(
        _("Something went wrong. Please try again."), False, USED, RETRY
    ),
    # Not upstream errors, but endings the user must understand all the same.
    "cut_off": CatalogEntry(_("This reply reached the length limit."), False, USED, CONTINUE),
    "interrupted": CatalogEntry(
        _(
            "This reply was interrupted because the server restarted. Nothing more will be "
            "added to it."
        ),
        False,
        USED,
        RETRY,
    ),
    # A budget refusal offers no Retry: nothing can pay for it until the reset (its words,
    # with the figures, come from meter.refusal_words; these are for rows without them).
    "budget_user": CatalogEntry(
        _("You've used your daily budget. It resets at midnight."), False, NEVER
    ),
    "budget_service": CatalogEntry(
        _("The service has reached today's spending limit. It resets at midnight."),
        False,
        NEVER,
        admin_action="The service's daily cap (DAILY_CAP_USD) was reached.",
    ),
    # Cut off at a limit the meter lowered to fit the money left (not the length limit).
    "budget_shortened": CatalogEntry(
        _("This reply was shortened to fit your budget left today."), False, USED, CONTINUE
    ),
    "budget_price": CatalogEntry(
        _(
            "This model has no valid price yet, so it cannot be used. An administrator has "
            "been notified."
        ),
        False,
        NEVER,
        admin_action="Set this model's prices in the model catalog.",
    ),
}


def entry_for(kind: str) -> CatalogEntry:
    return CATALOG.get(kind, CATALOG[ErrorKind.UNKNOWN])


def _redacted(text: str) -> str:
    """Some servers repeat (part of) the key they refused: it is never stored or logged."""
    for key in (settings.ANTHROPIC_API_KEY, settings.OPENAI_API_KEY):
        if key and len(key) >= 8:
            text = text.replace(key, "[redacted]")
    return text


def admin_detail(error: StreamError) -> str:
    """What admins see: status, upstream type and message, request id, what to look at.
    Never a key."""
    parts = [f"kind={error.kind.value}"]
    if error.status is not None:
        parts.append(f"status={error.status}")
    if error.error_type:
        parts.append(f"type={error.error_type}")
    if error.request_id:
        parts.append(f"request_id={error.request_id}")
    parts.append(f"message={_redacted(error.message)}")
    hint = entry_for(error.kind.value).admin_action
    if hint:
        parts.append(f"— {hint}")
    return " ".join(parts)
