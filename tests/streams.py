"""A page's copy of a reply being written, kept the way static/chat.js keeps it: batches
applied in sequence, repeats dropped, a gap answered by asking to resume."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

BATCH = re.compile(
    r'^<div hx-swap-oob="beforeend:#m-(\d+)-text"><span data-seq="(\d+)">(.*)</span></div>$',
    re.S,
)
RESET = re.compile(
    r'<div class="stream-text" id="m-(\d+)-text" data-seq="(\d+)" hx-swap-oob="true">(.*?)</div>',
    re.S,
)
ENDED = re.compile(r'<article id="m-(\d+)" class="message message--assistant" data-status="(\w+)"')


@dataclass
class StreamCopy:
    reply_id: int
    seq: int = 0
    text: str = ""
    status: str = "pending"
    applied: list[int] = field(default_factory=list)  # the batch numbers, in order

    def apply(self, frame: str) -> int | None:
        """Take one frame; returns the batch to resume after when it reveals a gap."""
        if match := BATCH.match(frame):
            if int(match.group(1)) != self.reply_id:
                return None
            seq = int(match.group(2))
            if seq <= self.seq:
                return None  # already here
            if seq > self.seq + 1:
                return self.seq
            self.seq, self.text = seq, self.text + html.unescape(match.group(3))
            self.applied.append(seq)
        elif (match := RESET.search(frame)) and int(match.group(1)) == self.reply_id:
            self.seq, self.text = int(match.group(2)), html.unescape(match.group(3))
            self.applied.append(-self.seq)
        for reply_id, status in ENDED.findall(frame):
            if int(reply_id) == self.reply_id:
                self.status = status
        return None

    @property
    def active(self) -> bool:
        return self.status in {"pending", "streaming"}
