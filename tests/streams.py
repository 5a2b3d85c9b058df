"""A page's copy of a reply being written, kept the way static/chat.js keeps it: batches
applied in sequence (finished blocks appended, the open block replaced, an open code
block's text appended), repeats dropped, a gap answered by asking to resume."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from conversations import dom
from conversations.streaming_render import StreamRenderer

BATCH = dom.parser(dom.BATCH)
RESET = re.compile(
    dom.parser_source(
        '<div class="stream-text markdown" id="' + dom.TEXT + '" data-seq="{seq}" dir="auto" '
        'hx-swap-oob="true"><div id="' + dom.DONE + '" class="stream-done">'
    )
    + "(?P<done>.*)"
    + dom.parser_source('</div><div id="' + dom.OPEN + '" class="stream-open">', known={"id"})
    + "(?P<open>.*)</div></div>$",
    re.S,
)
ENDED = re.compile(
    dom.parser_source(f'<article id="{dom.MESSAGE}" class="message message--assistant" ')
    + r'data-status="(?P<status>\w+)"'
)


def batch_parts(frame: str, reply_id: int) -> tuple[str, str | None, str, str, str]:
    """A batch frame's finished blocks, open block (None: unchanged), code to append, tail
    to append and table rows to append. Its markers cannot be in the parts: sanitised HTML
    and escaped text carry no hx-*."""
    marks = dom.batch_markers(reply_id)
    rest = frame[BATCH.match(frame).end() :]  # type: ignore[union-attr]
    rest, _, rows = rest.partition(marks.rows)
    rest, _, tail = rest.partition(marks.tail)
    rest, _, code = rest.partition(marks.code)
    done, _, opened = rest.partition(marks.open)
    return (
        done.removesuffix("</div>"),
        opened.removesuffix("</div>") if marks.open in rest else None,
        code.removesuffix("</div>"),
        tail.removesuffix("</div>"),
        rows.removesuffix("</template>"),
    )


def same_html(html: str) -> str:
    """HTML as the browser reads it (escaped code says `"` as &quot;, nh3 as `"`)."""
    return html.replace("&quot;", '"')


def shown(text: str) -> str:
    """What a page shows of a reply being written whose text so far is `text`."""
    return same_html(StreamRenderer(text).html)


@dataclass
class StreamCopy:
    reply_id: int
    seq: int = 0
    done: str = ""
    open: str = ""
    status: str = "pending"
    applied: list[int] = field(default_factory=list)  # the batch numbers, in order

    @classmethod
    def of(cls, reply_id: int, *, seq: int, text: str) -> StreamCopy:
        """The copy a page loaded mid-stream has: the checkpoint's text, formatted."""
        state = StreamRenderer(text)
        return cls(reply_id, seq=seq, done=state.done_html, open=state.open_html)

    @property
    def html(self) -> str:
        return same_html(self.done + self.open)

    def apply(self, frame: str) -> int | None:
        """Take one frame; returns the batch to resume after when it reveals a gap."""
        if match := BATCH.match(frame):
            if int(match["id"]) != self.reply_id:
                return None
            seq = int(match["seq"])
            if seq <= self.seq:
                return None  # already here
            if seq > self.seq + 1:
                return self.seq
            done, opened, code, tail, rows = batch_parts(frame, self.reply_id)
            self.done += done
            if opened is not None:
                self.open = opened
            if code:
                at = self.open.rindex("</code>")
                self.open = self.open[:at] + code + self.open[at:]
            if tail:  # the tail is the open part's last element
                at = self.open.rindex("</div>")
                self.open = self.open[:at] + tail + self.open[at:]
            if rows:  # its open table's last rows
                at = self.open.rindex("</tbody>")
                self.open = self.open[:at] + rows + self.open[at:]
            self.seq = seq
            self.applied.append(seq)
        elif (match := RESET.match(frame)) and int(match["id"]) == self.reply_id:
            self.seq, self.done, self.open = int(match["seq"]), match["done"], match["open"]
            self.applied.append(-self.seq)
        for ended in ENDED.finditer(frame):
            if int(ended["id"]) == self.reply_id:
                self.status = ended["status"]
        return None

    @property
    def active(self) -> bool:
        return self.status in {"pending", "streaming"}
