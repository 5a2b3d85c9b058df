"""static/chat.js reads what frames.py writes: frames made by frames.batch, stream_reset
and reply_status, arriving on the page's websocket, go through the page's own code (htmx's
websocket extension, chat.js's batch numbering) and show the reply as the server has it,
with no repeat and no hole. chat.js knows the ids and the batch's start only from the page
(conversations/dom.py), so a change there that chat.js did not follow fails here."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from conversations import dom, frames
from conversations.models import Conversation, Message
from conversations.rendering import render_markdown
from conversations.streaming_render import Ops, StreamRenderer

from .browser import launch_chromium, served_app
from .test_browser_chat import sign_up

pytestmark = pytest.mark.browser

# A reply with a block of each kind, and the batches it comes in.
REPLY = (
    "# A title\n\nA paragraph with *emphasis*\nand a second line.\n\n"
    "- one\n- two\n  - nested\n\n"
    "```python\ndef f(x):\n    return x < 1 and 'a' & \"b\"\n```\n\n"
    "| a | b |\n|---|--:|\n| 1 | **2** |\n| 3 | `4` |\n\n"
    "A last paragraph, cut mid-word to end."
)
CUTS = [5, 16, 40, 62, 75, 88, 100, 118, 130, 150, 162, 175, 190, 204, 215, len(REPLY)]

# Installed before the page's scripts: how many times its socket opened, and how many
# out-of-band swaps found no element to swap into (a batch for a reply no longer on the
# page reaches htmx only if chat.js did not recognise it).
WATCH = """
window.__opened = 0;
window.__noTarget = 0;
document.addEventListener("htmx:wsOpen", () => { window.__opened += 1; });
document.addEventListener("htmx:oobErrorNoTarget", () => { window.__noTarget += 1; });
"""

# Element `id`'s HTML without the copy buttons chat.js adds to code blocks, and `html`,
# both as this browser writes HTML.
HTML = """([id, html]) => {
  const el = document.getElementById(id);
  const shown = el ? el.cloneNode(true) : document.createElement("div");
  shown.querySelectorAll(".copy-code").forEach((button) => button.remove());
  const wanted = document.createElement("template");
  wanted.innerHTML = html;
  return [shown.innerHTML, wanted.innerHTML];
}"""


class Socket:
    """The page's websocket, held by the test instead of a server: what the test sends
    the page receives as the server's frames; what the page sends is kept."""

    def __init__(self) -> None:
        self.routes: list[WebSocketRoute] = []
        self.received: list[dict[str, Any]] = []
        self.marks = 0

    def connect(self, route: WebSocketRoute) -> None:
        route.on_message(lambda message: self.received.append(json.loads(message)))
        self.routes.append(route)

    def sent_by_page(self, page: Page, kind: str) -> list[dict[str, Any]]:
        """The messages of this type the page has sent, once there is one (or 5 s)."""
        for _ in range(50):
            found = [message for message in self.received if message.get("type") == kind]
            if found:
                return found
            page.wait_for_timeout(100)  # the page's messages arrive meanwhile
        return []

    def send(self, page: Page, *frames_: str) -> None:
        """Send frames, and wait until the page has taken them all (a marker frame after
        them has been applied: frames are applied in order)."""
        for frame in frames_:
            self.routes[-1].send(frame)
        self.marks += 1
        self.routes[-1].send(frames.error(f"mark {self.marks}"))
        expect(page.locator("#chat-error")).to_have_text(f"mark {self.marks}")


def text_state(page: Page, reply_id: int) -> tuple[str, str]:
    """The reply's text element: its batch number and its HTML."""
    return page.evaluate(
        "(id) => { const el = document.getElementById(id);"
        " return [el.dataset.seq, el.innerHTML]; }",
        dom.element_id(reply_id, "text"),
    )


def assert_shows(page: Page, reply_id: int, text: str) -> None:
    """The reply's text shows `text` formatted, as a page loaded now would show it."""
    arg = [dom.element_id(reply_id, "text"), frames.stream_parts(reply_id, StreamRenderer(text))]
    try:  # htmx settles swapped content a moment after the swap
        page.wait_for_function(
            f"(arg) => {{ const [a, b] = ({HTML})(arg); return a === b; }}", arg=arg, timeout=5000
        )
    except PlaywrightTimeout:
        shown, wanted = page.evaluate(HTML, arg)
        assert shown == wanted


def test_the_page_applies_the_frames_frames_py_makes(tmp_path, alice):
    conversation = Conversation.objects.create(owner=alice, model="claude-4-6", title="Frames")
    asked = Message.objects.create(conversation=conversation, role="user", content="Show me")
    reply = Message.objects.create(
        conversation=conversation,
        role="assistant",
        status=Message.Status.PENDING,
        reply_to=asked,
        model="claude-4-6",
    )
    renderer, batches, sent_to = StreamRenderer(), [], []
    for start, end in itertools.pairwise([0, *CUTS]):
        batches.append(frames.batch(reply.pk, len(batches) + 1, renderer.feed(REPLY[start:end])))
        sent_to.append(end)  # batch n holds the text up to sent_to[n - 1]
    # Made before the browser runs (its driver's event loop allows no database in here).
    opened, started = frames.conversation_opened(conversation), frames.turn_started(asked, reply)
    reply.content, reply.content_html = REPLY, render_markdown(REPLY)
    reply.status = Message.Status.COMPLETE
    reply.save()
    ended = frames.message_replaced(reply)
    status = f"#{dom.element_id(reply.pk, 'status')}"
    text = f"#{dom.element_id(reply.pk, 'text')}"

    # The page is the served app's new chat; its socket is the test's, which sends it the
    # frames made here (for messages of the test's database: the page knows only the ids).
    socket = Socket()
    with served_app(tmp_path) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(base_url=url)
        context.add_init_script(WATCH)
        context.route_web_socket(re.compile(r"/ws/chat/$"), socket.connect)
        page = context.new_page()
        sign_up(page, "alice")
        page.wait_for_function("() => window.__opened === 1")

        # The turn begins: the reply, waiting; then what it waits for.
        socket.send(page, opened, started)
        expect(page.locator(status)).to_have_text("Thinking…")
        expect(page.locator(text)).to_have_attribute("data-seq", "0")
        socket.send(page, frames.reply_status(reply.pk, queued=2))
        expect(page.locator(status)).to_have_text("Queued: 2 requests ahead of yours…")

        # Batches in order: each applies on top of the one before, its number kept.
        socket.send(page, *batches[:6])
        expect(page.locator(text)).to_have_attribute("data-seq", "6")
        assert_shows(page, reply.pk, REPLY[: sent_to[5]])
        expect(page.locator(f"{text} h1")).to_have_text("A title")

        # A batch the page has already: dropped, nothing shown twice.
        before = text_state(page, reply.pk)
        socket.send(page, batches[4], batches[5])
        assert text_state(page, reply.pk) == before
        assert not [m for m in socket.received if m.get("type") == "resume"]

        # A gap (batch 7 lost): 8 is dropped, and the page asks for what follows its 6.
        socket.send(page, batches[7])
        assert text_state(page, reply.pk) == before
        resumes = socket.sent_by_page(page, "resume")
        assert resumes == [{"type": "resume", "reply": str(reply.pk), "after": 6}]

        # Reconnected: the page says which batch it has of the reply being written.
        socket.routes[-1].close(code=1012)
        page.wait_for_function("() => window.__opened === 2", timeout=10_000)
        assert socket.sent_by_page(page, "subscribe") == [
            {
                "type": "subscribe",
                "conversation": str(conversation.pk),
                "resume": {str(reply.pk): 6},
            }
        ]

        # The server's answer to a page far behind: the whole text so far, as of batch 9.
        socket.send(page, frames.stream_reset(reply.pk, 9, REPLY[: sent_to[8]]))
        expect(page.locator(text)).to_have_attribute("data-seq", "9")
        assert_shows(page, reply.pk, REPLY[: sent_to[8]])

        # The rest, from batch 10 on; batch 9 again is dropped.
        socket.send(page, batches[8], *batches[9:])
        expect(page.locator(text)).to_have_attribute("data-seq", str(len(batches)))
        assert_shows(page, reply.pk, REPLY)
        expect(page.locator(f"{text} table tbody tr")).to_have_count(2)
        expect(page.locator(f"{text} pre code")).to_contain_text("return x < 1 and 'a' & \"b\"")

        # The reply ends: replaced by its final form; a late batch finds no reply to add to.
        socket.send(page, ended)
        article = page.locator(f"#{dom.element_id(reply.pk)}")
        expect(article).to_have_attribute("data-status", "complete")
        late = frames.batch(reply.pk, len(batches) + 1, Ops(done="<p>late</p>"))
        socket.send(page, late)
        expect(page.locator(text)).to_have_count(0)
        assert page.evaluate("window.__noTarget") == 0, "chat.js dropped it: no reply here"
        expect(article.get_by_text("late", exact=True)).to_have_count(0)
        browser.close()
