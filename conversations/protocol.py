"""Reading one message from the chat socket: its size, its JSON, its strings, its shape.

Messages from the page are JSON objects with a `type`:
  {"type": "subscribe", "conversation": ID, "resume": {REPLY: SEQ, ...}}
                                              watch a conversation's live frames; for each
                                              reply being written, send the batches after
                                              the last one the page has
  {"type": "resume", "reply": ID, "after": SEQ}   the page missed batches: send them again
  {"type": "send", "conversation": ID or "", "message": TEXT, "client_id": ID, "model": SLUG}
  {"type": "stop", "reply": ID}
  {"type": "retry", "reply": ID}       answer a failed reply's question again (a new turn)
  {"type": "continue", "reply": ID}    let a reply cut off at the length limit go on
  {"type": "regenerate", "reply": ID}  a new answer in place of the last reply
  {"type": "edit", "message": ID, "text": TEXT, "client_id": ID}
                                       send an edited message in place of it and all after
`parse` gives one typed shape per type, or raises `Unreadable` with what the person reads.
Ids stay as sent: the selectors that look them up refuse what is not an id of the user's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _

MAX_RESUMED = 10  # replies one subscribe may resume (a person has at most a few active)


class Unreadable(Exception):
    """The message cannot be acted on; `message` says why, for the person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Subscribe:
    conversation: object
    resume: list[tuple[object, object]]  # (reply id, the last batch the page has)


@dataclass(frozen=True)
class Resume:
    reply: object
    after: object


@dataclass(frozen=True)
class Send:
    conversation: object  # None or "": a new conversation
    text: object
    client_id: str
    model: str | None

    @property
    def opens_conversation(self) -> bool:
        # Only no conversation at all means a new one: [], 0 or {} is an id that is wrong.
        return self.conversation is None or self.conversation == ""


@dataclass(frozen=True)
class Stop:
    reply: object


@dataclass(frozen=True)
class FollowUp:
    """Retry, Continue or Regenerate: a new request for an existing reply."""

    kind: str  # "retry", "continue" or "regenerate"
    reply: object


@dataclass(frozen=True)
class Edit:
    message: object
    text: object
    client_id: str


Request = Subscribe | Resume | Send | Stop | FollowUp | Edit


def parse(text_data: str | None) -> Request:
    """The request in one socket message, or Unreadable."""
    if text_data is None:
        raise Unreadable(_("Messages must be text."))
    if len(text_data) > settings.WS_MAX_MESSAGE_CHARS:
        raise Unreadable(_("That message is too large to send."))
    try:
        payload = json.loads(text_data)
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        payload = None
    if not isinstance(payload, dict) or not _readable(payload):
        raise Unreadable(_("That message could not be read."))
    kind = payload.get("type")
    shape = _SHAPES.get(kind if isinstance(kind, str) else "")
    if shape is None:
        raise Unreadable(_("Unknown request."))
    return shape(payload)


def _subscribe(payload: dict[str, Any]) -> Subscribe:
    resume = payload.get("resume")
    pairs = list(resume.items())[:MAX_RESUMED] if isinstance(resume, dict) else []
    return Subscribe(payload.get("conversation"), pairs)


def _send(payload: dict[str, Any]) -> Send:
    return Send(
        conversation=payload.get("conversation"),
        text=payload.get("message"),
        client_id=text_of(payload.get("client_id")),
        model=text_of(payload.get("model")) or None,
    )


_SHAPES: dict[str, Any] = {
    "subscribe": _subscribe,
    "resume": lambda p: Resume(p.get("reply"), p.get("after")),
    "send": _send,
    "stop": lambda p: Stop(p.get("reply")),
    "retry": lambda p: FollowUp("retry", p.get("reply")),
    "continue": lambda p: FollowUp("continue", p.get("reply")),
    "regenerate": lambda p: FollowUp("regenerate", p.get("reply")),
    "edit": lambda p: Edit(p.get("message"), p.get("text"), text_of(p.get("client_id"))),
}
TYPES = frozenset(_SHAPES)


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _readable(payload: object) -> bool:
    """No string in the message, keys included, holds a NUL or half a surrogate pair
    (JSON's \\u escapes allow both): neither is text a person typed, UTF-8 cannot carry a
    lone surrogate and PostgreSQL refuses NUL. Iterative: the nesting may be deep."""
    pending = [payload]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if "\x00" in value or _SURROGATE.search(value):
                return False
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return True


def text_of(value: object) -> str:
    """`value` if it is a string, else "" (what the page gets back to put in the box)."""
    return value if isinstance(value, str) else ""
