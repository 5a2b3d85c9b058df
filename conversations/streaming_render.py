"""Markdown rendered while it streams: each batch changes only the end of the page's copy.

A reply is a run of top-level Markdown blocks (paragraphs, headings, lists, tables, code
blocks, quotes). CommonMark reads blocks line by line and never reopens one it has closed,
so once a complete line starts a new top-level block, every block before it is finished:
it is rendered once (markdown-it-py and nh3, through `rendering`, the same allowlist) and
sent once, appended to the page's finished part. The last block may still change (a list
gains an item and becomes loose, a paragraph gets a `===` underline and becomes a heading,
a table a row): it is the open part, rendered again each batch from its own text only, and
sent whole to replace the one shown. A top-level code fence that is open is the exception:
it is shown as a code block as soon as it opens, its text appended escaped line by line,
and rendered once (highlighted) when its closing fence arrives (stream_fence.py). The work
per batch is the batch and the block being written, never the reply.

What the page shows is a function of the text so far, whatever the batches were: a page
that loads or falls behind mid-stream gets `StreamRenderer(text)`'s parts, and the batches
after apply on top. At the end, finished part + open part equal `render_markdown(text)`
(the one-shot render the reply is stored with), so swapping that in moves nothing. The one
exception is a link reference defined after its use (`[x][ref]` above `[ref]: url`): the
block above was rendered before the definition came; the final swap shows the link.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from .rendering import parse_blocks, render_part
from .stream_fence import Fence, closes_at

# An open part longer than this (characters of text) is large: see `_show_open`.
OPEN_LIMIT: int = settings.STREAM_OPEN_LIMIT
GROWTH = 1.25  # each render point at least this much further than the one before
# An open part this long that holds code is fed off the event loop (Pygments may run).
CODE_LIMIT = 512


@dataclass(frozen=True)
class Ops:
    """What one batch changes on the page, applied in this order: `done` is appended to the
    finished part; `open`, when not None, replaces the open part; `code` (escaped text) is
    appended to the open part's code block, `rows` (sanitised HTML) to its table's body,
    `tail` (escaped text) to its tail (a large open part's text after its last render
    point)."""

    done: str = ""
    open: str | None = None
    code: str = ""
    rows: str = ""
    tail: str = ""


# Blocks that nothing after them can change: a closed fence (an open one is not the last
# block here), a heading, a rule once their line is complete; a paragraph, a quote, a table
# once a blank line follows. Not a list (a blank line, then an item, and the list goes on,
# loose) nor indented code (it goes on after blank lines).
_BLANK_LINES = re.compile(r"(?:[ \t]*\n)*")
_COMPLETE_ONCE_WRITTEN = {"fence", "heading_open", "hr"}
_ENDED_BY_A_BLANK_LINE = {"paragraph_open", "blockquote_open", "table_open"}


def _top_level_blocks(tokens: list[Any]) -> list[Any]:
    """The opening token of each top-level block (closing tokens carry no map)."""
    return [t for t in tokens if t.level == 0 and t.nesting >= 0 and t.map is not None]


class StreamRenderer:
    """The page's copy of one reply being written, fed batch by batch."""

    def __init__(self, text: str = "") -> None:
        self.text = ""  # normalised as markdown-it does: \r\n and \r are \n, NUL is U+FFFD
        self._cr = False  # the text ended with \r: a \n starting the next batch belongs to it
        self._done: list[str] = []  # the finished part, block by block
        self._done_end = 0  # offset in the text where the open part begins
        self._env: dict[str, Any] = {}  # link references the finished part defined
        self._open: str | None = ""  # the open part as sent; None: the page shows another
        self._fence: Fence | None = None
        self._code: list[str] = []  # the open fence's code, as shown (escaped)
        self._parsed = (-1, 0)  # (open part's offset, its complete lines' length) last parsed
        # A large open part (see _show_open): its rendered head, None while it is small; the
        # offsets in it of its render point, of the one rendered, of the text shown, and up
        # to which its line ends have been looked at; its tail as shown (escaped text).
        self._head: str | None = None
        self._point = self._rendered = self._shown = self._scanned = 0
        self._tail: list[str] = []
        self._table = False  # the large open part is a table: its rows are appended
        self._rows: list[str] = []  # its rows after the head, as appended
        # The end of the open part to parse to find whether it goes on: its kind of block,
        # the offset in it to parse from, and the lines put before (a table's head).
        self._window: tuple[str, int, str] | None = None
        if text:
            self.feed(text)

    # --- what the page shows -------------------------------------------------------------
    @property
    def done_html(self) -> str:
        return "".join(self._done)

    @property
    def open_html(self) -> str:
        if self._fence is not None:
            return self._fence.html("".join(self._code))
        if self._head is not None:
            head = self._head
            if self._rows:  # before its </tbody>\n</table>\n
                head = head[:-18] + "".join(self._rows) + head[-18:]
            return head + f'<div class="stream-tail">{"".join(self._tail)}</div>'
        return self._open or ""

    @property
    def html(self) -> str:
        return self.done_html + self.open_html

    # --- a batch -------------------------------------------------------------------------
    def feed(self, chunk: str) -> Ops:
        """Take the next batch of text; what the page must change to show it."""
        if self._cr and chunk.startswith("\n"):
            chunk = chunk[1:]
        if chunk:
            self._cr = chunk.endswith("\r")
            chunk = chunk.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "\ufffd")
        self.text += chunk
        done: list[str] = []
        opened: str | None = None
        code: list[str] = []
        tail: list[str] = []
        rows: list[str] = []
        while True:
            if self._fence is None:
                changed, new_rows, added = self._blocks(done)
                if changed is not None:
                    opened, tail, rows = changed, [], []
                rows.append(new_rows)
                tail.append(added)
                if self._fence is None:
                    break
                # A code fence opened: it replaces the open part, its code appended after.
                opened, code, tail, rows = self._fence.html(""), [], [], []
                self._code, self._open = [], None
            fence = self._fence
            end = fence.closing(self.text)
            if end is None:
                if shown := fence.code_to_show(self.text):
                    self._code.append(shown)
                    code.append(shown)
                break
            # The fence closed: rendered once (highlighted), appended to the finished part.
            self._finish_blocks(done, self.text[fence.start : end])
            self._fence, self._code, code = None, [], []
        return Ops(
            done="".join(done),
            open=opened,
            code="".join(code),
            rows="".join(rows),
            tail="".join(tail),
        )

    def heavy(self, chunk: str) -> bool:
        """Whether feeding `chunk` may take more than a batch's worth of work: it closes a
        code block (rendered whole, highlighted), or completes a line of a large open part
        (parsed whole, maybe rendered), or the open part holds code that may be highlighted
        again, or a table (slow to render). The app feeds those batches in a thread, off
        the event loop."""
        if self._fence is not None:
            return self.closes_a_fence(chunk)
        size = len(self.text) - self._done_end + len(chunk)
        if size > OPEN_LIMIT:
            return "\n" in chunk or "\r" in chunk
        return size > CODE_LIMIT and any(
            mark in self.text[self._done_end :] + chunk for mark in ("```", "~~~", "\n    ", "|")
        )

    def closes_a_fence(self, chunk: str) -> bool:
        """Whether `chunk` completes a line that closes the open code fence: the batch that
        renders (and highlights) the whole code block, a block's worth of work."""
        fence = self._fence
        if fence is None or "\n" not in chunk:
            return False
        lines = (self.text[fence.line :] + chunk).split("\n")[:-1]
        return any(fence.closed_by(line.rstrip("\r")) for line in lines)

    # --- blocks --------------------------------------------------------------------------
    def _blocks(self, done: list[str]) -> tuple[str | None, str, str]:
        """Finish every block a complete line has closed; show the one still open. The
        open part's new HTML, or None if it is not replaced (or a code fence opened), and
        the escaped text to append to its tail (a large open part's, see `_show_open`)."""
        tail = self.text[self._done_end :]
        complete = tail[: tail.rfind("\n") + 1]
        # The blocks change only when a line completes: parsed then, and only then.
        if (self._done_end, len(complete)) == self._parsed:
            return self._show_open(tail)
        if len(tail) > OPEN_LIMIT and self._goes_on(complete):
            self._parsed = (self._done_end, len(complete))
            return self._show_open(tail)
        tokens = parse_blocks(complete) if complete else []
        blocks = _top_level_blocks(tokens)
        cut = 0
        if blocks:
            last, lines = blocks[-1], complete.split("\n")
            if last.type == "fence" and not closes_at(last, lines):
                self._finish_blocks(done, tail[: _offset(lines, last.map[0])])
                self._fence = Fence.opened(last, self._done_end, lines[last.map[0]])
                return None, "", ""
            if last.type in _COMPLETE_ONCE_WRITTEN or (
                last.type in _ENDED_BY_A_BLANK_LINE and last.map[1] < len(lines) - 1
            ):
                cut = _offset(lines, last.map[1])  # nothing after it can change it
            elif len(blocks) > 1:
                cut = _offset(lines, last.map[0])
        # Blank lines before the open block go with the finished part: the open part
        # starts where its block does, whatever the batches were.
        cut += _BLANK_LINES.match(complete, cut).end() - cut  # type: ignore[union-attr]
        if cut:
            self._finish_blocks(done, tail[:cut])
            tail = tail[cut:]
        self._parsed = (self._done_end, len(complete) - cut)
        self._window = None
        if blocks and cut == _offset(lines, last.map[0]):
            self._window = _window(tokens, last, lines, cut)
        return self._show_open(tail)

    def _goes_on(self, complete: str) -> bool:
        """Whether the open part, one block whose complete lines are `complete`, stays one
        block of the same kind that nothing has finished, found by parsing only its end
        (see `_window`): CommonMark reads the lines after it the same way there. Then the
        full parse would find nothing to cut either, and is not needed."""
        if self._window is None:
            return False
        kind, start, head = self._window
        text = head + complete[start:]
        tokens = parse_blocks(text)
        blocks = _top_level_blocks(tokens)
        if len(blocks) != 1 or blocks[0].type != kind or blocks[0].map != [0, text.count("\n")]:
            return False
        if kind == "paragraph_open":  # from its last line on
            start = complete.rfind("\n", 0, len(complete) - 1) + 1
        elif kind == "table_open":  # the rows after its head
            start = len(complete)
        else:  # a list: from its last item on
            item = [t for t in tokens if t.type == "list_item_open" and t.level == 1][-1]
            start += _offset(text.split("\n"), item.map[0]) - len(head)
        self._window = (kind, start, head)
        return True

    def _show_open(self, tail: str) -> tuple[str | None, str, str]:
        """The open part, whose text is `tail`: its new HTML (None: not replaced), rows to
        append to its table, text to append to its tail. Rendered whole while it is small.
        A large one (over OPEN_LIMIT) is a table whose rows are appended as they complete
        (its rows do not depend on each other), or is rendered up to its last render point
        only, the text after it shown as escaped text appended to a tail below: the render
        points are line ends each at least a quarter further than the one before, so a
        block of n bytes costs O(n) to render in all, and most batches append text only."""
        if len(tail) <= OPEN_LIMIT:
            html = render_part(tail, _copy(self._env)) if tail.strip() else ""
            if html == self._open:
                return None, "", ""
            self._open = html
            return html, "", ""
        complete = tail.rfind("\n") + 1
        if self._head is None:
            # Just grown large: its first render point is its last line end within the limit.
            self._point = self._scanned = tail.rfind("\n", 0, OPEN_LIMIT) + 1
            self._rows, self._table = [], False
            if self._window is not None and self._window[0] == "table_open":
                head = self._render(tail[: self._point])
                if head.endswith("</tbody>\n</table>\n"):  # rows after it are appended
                    self._head, self._table = head, True
                    self._rows = [self._table_rows(tail[self._point : complete])]
                    self._scanned, self._tail = complete, []
                    self._open = self.open_html
                    return self._open, "", ""
        elif self._table:  # the lines completed since are rows: appended
            rows = self._table_rows(tail[self._scanned : complete])
            self._scanned = complete
            self._rows.append(rows)
            return None, rows, ""
        while (newline := tail.find("\n", self._scanned, complete)) != -1:
            self._scanned = newline + 1
            if self._scanned >= self._point * GROWTH:
                self._point = self._scanned
        if self._head is None or self._rendered != self._point:
            self._rendered = self._point
            self._head = self._render(tail[: self._point])
            self._tail = [tail_text(tail[self._point :])]
            self._shown = len(tail)
            self._open = self.open_html
            return self._open, "", ""
        added = tail_text(tail[self._shown :])
        self._shown = len(tail)
        if added:
            self._tail.append(added)
        return None, "", added

    def _render(self, text: str) -> str:
        """The open part's `text` rendered (the link references it defines do not last)."""
        return render_part(text, _copy(self._env)) if text.strip() else ""

    def _table_rows(self, rows: str) -> str:
        """The HTML of `rows`, lines the open table has gained, rendered after its head."""
        if not rows:
            return ""
        assert self._window is not None
        html = render_part(self._window[2] + rows, _copy(self._env))
        return html[html.index("<tbody>\n") + 8 : html.rindex("</tbody>")]

    def _finish_blocks(self, done: list[str], text: str) -> None:
        """`text`, the start of the open part, is finished: rendered once, appended."""
        html = render_part(text, self._env) if text.strip() else ""
        if html:
            done.append(html)
            self._done.append(html)
        self._done_end += len(text)
        self._open = None  # what the page shows as open is no longer the open part
        self._head = None  # nor is it large
        self._window = None


EMPTY_TAIL = '<div class="stream-tail"></div>'


def tail_text(text: str) -> str:
    """Text as the page's tail shows it, escaped as nh3 writes text (so a sanitised tail is
    the same string), piece by piece: the escape of a concatenation is the pieces'."""
    return (
        text.replace("&", "&amp;")
        .replace("\xa0", "&nbsp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
    )


def _window(
    tokens: list[Any], last: Any, lines: list[str], cut: int
) -> tuple[str, int, str] | None:
    """Where to parse the open part from, `last` (its one block, starting at `cut` in the
    text `lines` were split from), to know whether lines added to it make it go on: a
    paragraph from its last line (a line can only interrupt it or, with the one before,
    start a table or underline a heading), a table's rows after its head and delimiter row
    (its rows do not depend on each other), a list from its last item (items before it
    cannot change where it ends). None for any other block: parsed whole."""
    if last.map[1] != len(lines) - 1:
        return None  # blank lines after it
    if last.type == "paragraph_open":
        return last.type, _offset(lines, last.map[1] - 1) - cut, ""
    if last.type == "table_open" and last.map[1] - last.map[0] > 2:
        head = "".join(line + "\n" for line in lines[last.map[0] : last.map[0] + 2])
        return last.type, _offset(lines, last.map[1]) - cut, head
    if last.type in ("bullet_list_open", "ordered_list_open"):
        items = [t for t in tokens if t.type == "list_item_open" and t.level == 1]
        return last.type, _offset(lines, items[-1].map[0]) - cut, ""
    return None


def _offset(lines: list[str], line: int) -> int:
    """The offset of line `line` in the text that `lines` were split from."""
    return sum(len(text) + 1 for text in lines[:line])


def _copy(env: dict[str, Any]) -> dict[str, Any]:
    """`env` for a render whose definitions must not last (the open part's)."""
    return {**env, "references": dict(env.get("references", {}))}
