"""Short words for the error kinds the ledger records (UsageRecord.error_kind), for the
support pages: what happened, as a person says it, instead of the code. The user-facing
sentences stay in billing/errors.py (the catalog); these are its headings."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from billing.errors import CATALOG

ERROR_KIND_LABELS = {
    "authentication": _("Provider key refused"),
    "permission": _("Provider access denied"),
    "not_found": _("Model not found"),
    "invalid_request": _("Request refused as invalid"),
    "request_too_large": _("Request too large"),
    "context_too_long": _("Conversation too long for the model"),
    "billing": _("Provider credit exhausted"),
    "rate_limit": _("Rate-limited by the provider"),
    "spend_limit": _("Provider spending limit reached"),
    "server": _("Provider server error"),
    "overloaded": _("Provider overloaded"),
    "timeout": _("Timed out"),
    "connection": _("Connection lost"),
    "malformed": _("Unreadable answer"),
    "unknown": _("Unknown error"),
    "cut_off": _("Cut off at the length limit"),
    "interrupted": _("Interrupted by a restart"),
    "budget_user": _("User's daily budget reached"),
    "budget_service": _("Service's daily limit reached"),
    "budget_price": _("Model without a valid price"),
}


def error_kind_label(kind: str) -> str:
    """The short words for `kind`; for a kind added to the catalog without a label here,
    the catalog's own sentence (never the bare code, when the catalog knows it)."""
    if kind in ERROR_KIND_LABELS:
        return str(ERROR_KIND_LABELS[kind])
    if kind in CATALOG:
        return str(CATALOG[kind].words)
    return kind
