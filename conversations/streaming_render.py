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
and rendered once (highlighted) when its closing fence arrives. The work per batch is the
batch and the block being written, never the reply.

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

from markdown_it.common.utils import escapeHtml

from .rendering import code_label, codeblock_html, parse, render_markdown, render_part, sanitise


@dataclass(frozen=True)
class Ops:
    """What one batch changes on the page, applied in this order: `done` is appended to the
    finished part; `open`, when not None, replaces the open part; `code` (escaped text) is
    appended to the open part's code block."""

    done: str = ""
    open: str | None = None
    code: str = ""


@dataclass
class _Fence:
    """A top-level code fence that has not closed yet."""

    start: int  # offset of its opening line in the text
    char: str  # ` or ~
    length: int  # of the opening fence: a closing one is at least as long
    indent: int  # spaces before the opening fence, taken off each line of code
    label: str  # the language shown on its bar
    line: int  # offset of the first line not yet known to be complete
    shown: int  # offset up to which its code has been shown


# Blocks that nothing after them can change: a closed fence (an open one is not the last
# block here), a heading, a rule once their line is complete; a paragraph, a quote, a table
# once a blank line follows. Not a list (a blank line, then an item, and the list goes on,
# loose) nor indented code (it goes on after blank lines).
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
        self._fence: _Fence | None = None
        self._code: list[str] = []  # the open fence's code, as shown (escaped)
        if text:
            self.feed(text)

    # --- what the page shows -------------------------------------------------------------
    @property
    def done_html(self) -> str:
        return "".join(self._done)

    @property
    def open_html(self) -> str:
        if self._fence is not None:
            return self._fence_html(self._fence, "".join(self._code))
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
        while True:
            if self._fence is None:
                changed = self._blocks(done)
                if changed is not None:
                    opened = changed
                if self._fence is None:
                    break
                # A code fence opened: it replaces the open part, its code appended after.
                opened, code = self._fence_html(self._fence, ""), []
                self._code, self._open = [], None
            fence = self._fence
            end = self._closing(fence)
            if end is None:
                if shown := self._show_code(fence):
                    code.append(shown)
                break
            # The fence closed: rendered once (highlighted), appended to the finished part.
            self._finish_blocks(done, self.text[fence.start : end])
            self._fence, self._code, code = None, [], []
        return Ops(done="".join(done), open=opened, code="".join(code))

    def closes_a_fence(self, chunk: str) -> bool:
        """Whether `chunk` completes a line that closes the open code fence: the batch that
        renders (and highlights) the whole code block, a block's worth of work."""
        fence = self._fence
        if fence is None or "\n" not in chunk:
            return False
        lines = (self.text[fence.line :] + chunk).split("\n")[:-1]
        return any(self._closes(fence, line.rstrip("\r")) for line in lines)

    def finish(self) -> tuple[str, bool]:
        """The reply's final HTML (the one-shot render), and whether the page's copy already
        shows exactly that (it does unless a link reference was defined after its use)."""
        final = render_markdown(self.text)
        tail = self.text[self._done_end :]
        shown = self.done_html + (render_part(tail, _copy(self._env)) if tail.strip() else "")
        return final, shown == final

    # --- blocks --------------------------------------------------------------------------
    def _blocks(self, done: list[str]) -> str | None:
        """Finish every block a complete line has closed; render the one still open. The
        open part's new HTML, or None if it has not changed (or a code fence opened)."""
        tail = self.text[self._done_end :]
        complete = tail[: tail.rfind("\n") + 1]
        blocks = _top_level_blocks(parse(complete)) if complete else []
        cut = 0
        if blocks:
            last, lines = blocks[-1], complete.split("\n")
            if last.type == "fence" and not self._closes_at(last, lines):
                self._finish_blocks(done, tail[: _offset(lines, last.map[0])])
                self._fence = self._open_fence(last, self._done_end, lines[last.map[0]])
                return None
            if last.type in _COMPLETE_ONCE_WRITTEN or (
                last.type in _ENDED_BY_A_BLANK_LINE and last.map[1] < len(lines) - 1
            ):
                cut = _offset(lines, last.map[1])  # nothing after it can change it
            elif len(blocks) > 1:
                cut = _offset(lines, last.map[0])
        if cut:
            self._finish_blocks(done, tail[:cut])
            tail = tail[cut:]
        html = render_part(tail, _copy(self._env)) if tail.strip() else ""
        if html == self._open:
            return None
        self._open = html
        return html

    def _finish_blocks(self, done: list[str], text: str) -> None:
        """`text`, the start of the open part, is finished: rendered once, appended."""
        html = render_part(text, self._env) if text.strip() else ""
        if html:
            done.append(html)
            self._done.append(html)
        self._done_end += len(text)
        self._open = None  # what the page shows as open is no longer the open part

    # --- an open code fence --------------------------------------------------------------
    def _open_fence(self, token: Any, start: int, opening: str) -> _Fence:
        indent = len(opening) - len(opening.lstrip(" "))
        content = start + len(opening) + 1
        return _Fence(
            start=start,
            char=token.markup[0],
            length=len(token.markup),
            indent=indent,
            label=code_label(token.info)[1],
            line=content,
            shown=content,
        )

    @staticmethod
    def _fence_html(fence: _Fence, code: str) -> str:
        return sanitise(codeblock_html(fence.label, code))

    def _closes(self, fence: _Fence, line: str) -> bool:
        match = re.fullmatch(r" {0,3}(`+|~+)[ \t]*", line)
        return bool(
            match and match.group(1)[0] == fence.char and len(match.group(1)) >= fence.length
        )

    def _closes_at(self, token: Any, lines: list[str]) -> bool:
        """Whether the fence `token` ends with a closing fence (rather than the text)."""
        start, end = token.map
        if end - start < 2:
            return False
        fence = _Fence(0, token.markup[0], len(token.markup), 0, "", 0, 0)
        return self._closes(fence, lines[end - 1])

    def _closing(self, fence: _Fence) -> int | None:
        """The offset just after the closing fence, if a complete line closes `fence`;
        otherwise None, with `fence.line` moved to the first line not yet complete."""
        while (newline := self.text.find("\n", fence.line)) != -1:
            if self._closes(fence, self.text[fence.line : newline]):
                return newline + 1
            fence.line = newline + 1
        return None

    def _show_code(self, fence: _Fence) -> str:
        """The code not shown yet, escaped: the complete lines, and the line being written
        unless it may yet become the closing fence (or is only indentation so far)."""
        end = len(self.text)
        partial = self.text[fence.line :]
        if partial and re.fullmatch(r"[ \t]*|( {0,3}(`+|~+)[ \t]*)", partial):
            end = fence.line
        start = fence.shown
        if end <= start:
            return ""
        shown, fence.shown = self.text[start:end], end
        if fence.indent:
            # Each line loses up to `indent` spaces, as markdown-it takes them off (a line
            # begun in an earlier batch lost them then).
            pieces = shown.split("\n")
            for i, piece in enumerate(pieces):
                if i > 0 or self.text[start - 1] == "\n":
                    spaces = len(piece) - len(piece.lstrip(" "))
                    pieces[i] = piece[min(fence.indent, spaces) :]
            shown = "\n".join(pieces)
        html = escapeHtml(shown)
        self._code.append(html)
        return html


def _offset(lines: list[str], line: int) -> int:
    """The offset of line `line` in the text that `lines` were split from."""
    return sum(len(text) + 1 for text in lines[:line])


def _copy(env: dict[str, Any]) -> dict[str, Any]:
    """`env` for a render whose definitions must not last (the open part's)."""
    return {**env, "references": dict(env.get("references", {}))}
