"""A top-level code fence still open in a reply being written (streaming_render.py).

The page shows it as a code block as soon as it opens; its code is appended as escaped text
line by line, and the block is rendered once (highlighted) when a closing fence arrives.
This module knows where such a fence closes and which of its code can be shown yet: a line
that may still turn out to be the closing fence waits for its end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from markdown_it.common.utils import escapeHtml

from .rendering import code_label, codeblock_html, sanitise


@dataclass
class Fence:
    """A top-level code fence that has not closed yet."""

    start: int  # offset of its opening line in the text
    char: str  # ` or ~
    length: int  # of the opening fence: a closing one is at least as long
    indent: int  # spaces before the opening fence, taken off each line of code
    label: str  # the language shown on its bar
    line: int  # offset of the first line not yet known to be complete
    shown: int  # offset up to which its code has been shown

    @classmethod
    def opened(cls, token: Any, start: int, opening: str) -> Fence:
        """The fence markdown-it parsed as `token`, whose opening line `opening` is at
        offset `start` of the text."""
        indent = len(opening) - len(opening.lstrip(" "))
        content = start + len(opening) + 1
        return cls(
            start=start,
            char=token.markup[0],
            length=len(token.markup),
            indent=indent,
            label=code_label(token.info)[1],
            line=content,
            shown=content,
        )

    def html(self, code: str) -> str:
        """The code block as the page shows it while open, holding `code` (escaped)."""
        return sanitise(codeblock_html(self.label, code))

    def closed_by(self, line: str) -> bool:
        """Whether `line` (without its line end) is a closing fence for this one."""
        match = re.fullmatch(r" {0,3}(`+|~+)[ \t]*", line)
        return bool(match and match.group(1)[0] == self.char and len(match.group(1)) >= self.length)

    def closing(self, text: str) -> int | None:
        """The offset in `text` just after the closing fence, if a complete line closes
        this fence; otherwise None, with `line` moved to the first line not yet complete."""
        while (newline := text.find("\n", self.line)) != -1:
            if self.closed_by(text[self.line : newline]):
                return newline + 1
            self.line = newline + 1
        return None

    def code_to_show(self, text: str) -> str:
        """The code of `text` not shown yet, escaped (and now counted as shown): the
        complete lines, and the line being written unless it may yet become the closing
        fence (or is only indentation so far)."""
        end = len(text)
        partial = text[self.line :]
        if partial and re.fullmatch(r"[ \t]*|( {0,3}(`+|~+)[ \t]*)", partial):
            end = self.line
        start = self.shown
        if end <= start:
            return ""
        shown, self.shown = text[start:end], end
        if self.indent:
            # Each line loses up to `indent` spaces, as markdown-it takes them off (a line
            # begun in an earlier batch lost them then).
            pieces = shown.split("\n")
            for i, piece in enumerate(pieces):
                if i > 0 or text[start - 1] == "\n":
                    spaces = len(piece) - len(piece.lstrip(" "))
                    pieces[i] = piece[min(self.indent, spaces) :]
            shown = "\n".join(pieces)
        return escapeHtml(shown)


def closes_at(token: Any, lines: list[str]) -> bool:
    """Whether the fence `token` (parsed from the text `lines` were split from) ends with a
    closing fence, rather than with the text."""
    start, end = token.map
    if end - start < 2:
        return False
    return Fence(0, token.markup[0], len(token.markup), 0, "", 0, 0).closed_by(lines[end - 1])
