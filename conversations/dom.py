"""The page's element ids for a message, and the markers of a batch frame, in one place.

A reply being written is found on the page by its ids, and a batch finds its reply by the
first element of its frame; the server writes them, static/chat.js and the tests read them.
So they are spelled here only: frames.py builds frames with them, the templates use the
`dom` tag library (`{{ message.pk|dom_id:"text" }}`), the chat page hands chat.js the same
patterns (`{% dom_patterns %}`), and the tests' parsers read frames with `parser`.

Each is a pattern: `{id}` is a message's primary key, `{seq}` a batch's number. Python fills
them in with `str.format`; reading one back (`parser` here, `patternParser` in chat.js)
takes its text as it is and each placeholder as a number, so both sides follow one rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

# The ids of a message's elements (templates/conversations/chat.html, partial `message`).
MESSAGE = "m-{id}"  # the message's <article>
TEXT = "m-{id}-text"  # a reply being written: its text so far (data-seq: the last batch in it)
STATUS = "m-{id}-status"  # what a reply with no text yet is waiting for ("Queued…")
DONE = "m-{id}-done"  # inside its text: the finished blocks
OPEN = "m-{id}-open"  # inside its text: the block being written

IDS = {"message": MESSAGE, "text": TEXT, "status": STATUS, "done": DONE, "open": OPEN}

# A batch frame (frames.batch) starts with the element that appends the finished blocks; it
# carries the reply and the batch's number, which is all chat.js reads before htmx swaps.
BATCH = '<div hx-swap-oob="beforeend:#' + DONE + '" data-seq="{seq}">'
# What may follow it, in this order: the open block replaced, text appended to its code
# block, its table's rows, its tail (streaming_render.Ops).
OPEN_REPLACED = '<div id="' + OPEN + '" class="stream-open" hx-swap-oob="true">'
CODE_APPENDED = '<div hx-swap-oob="beforeend:#' + OPEN + ' code">'
TAIL_APPENDED = '<div hx-swap-oob="beforeend:#' + OPEN + ' > .stream-tail">'
# Table rows parse only inside a table or a template: chat.js hands a template's to htmx.
ROWS_APPENDED = '<template data-rows hx-swap-oob="beforeend:#' + OPEN + ' > table > tbody">'

# What the page gives chat.js (the `dom_patterns` tag): the ids, and the batch's start.
PATTERNS = {**IDS, "batch": BATCH}


class BatchMarkers(NamedTuple):
    """The start of each optional element of a batch frame for one reply."""

    open: str
    code: str
    tail: str
    rows: str


def element_id(pk: int | str, part: str = "message") -> str:
    """The id of message `pk`'s element `part` (a key of IDS)."""
    return IDS[part].format(id=pk)


def batch_start(reply_id: int | str, seq: int) -> str:
    """The first element of batch `seq` of reply `reply_id`, up to its content."""
    return BATCH.format(id=reply_id, seq=seq)


def batch_markers(reply_id: int | str) -> BatchMarkers:
    return BatchMarkers(
        open=OPEN_REPLACED.format(id=reply_id),
        code=CODE_APPENDED.format(id=reply_id),
        tail=TAIL_APPENDED.format(id=reply_id),
        rows=ROWS_APPENDED.format(id=reply_id),
    )


def parser_source(pattern: str, *, known: Iterable[str] = ()) -> str:
    """`pattern` as a regular expression: its text matched as it is, `{id}` and `{seq}`
    each a number in a group of that name (a second `{id}` must be the same number, as
    must one whose group a regular expression this continues already has: `known`)."""
    source, seen = "", set(known)
    for n, piece in enumerate(re.split(r"\{(id|seq)\}", pattern)):
        if n % 2 == 0:
            source += re.escape(piece)
        elif piece in seen:
            source += f"(?P={piece})"
        else:
            source += rf"(?P<{piece}>\d+)"
            seen.add(piece)
    return source


def parser(pattern: str) -> re.Pattern[str]:
    """A regular expression that matches `pattern` filled in, from the start (see
    `parser_source`); e.g. `parser(BATCH).match(frame)["id"]` is a batch's reply."""
    return re.compile(parser_source(pattern), re.S)
