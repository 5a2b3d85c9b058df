"""Replies formatted while they stream, in a real browser: headings, lists, tables and code
take their form before the reply ends, nothing moves when it ends, and Continue keeps the
reply formatted while it extends it."""

from __future__ import annotations

import sqlite3

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from .browser import LOOKS, SIMULATED_CLAUDE, launch_chromium, served_app
from .test_browser_chat import sign_up

pytestmark = pytest.mark.browser

# Installed before the page's scripts: after every change to the page, while the newest
# reply streams, which kinds of block it shows, and where its last paragraph sits (from the
# top of the reply, so that scrolling does not count) with that paragraph's text.
WATCH = """
window.__formed = {};
window.__last = null;
window.__caret = false;
window.__openCode = "";
function look() {
  const box = [...document.querySelectorAll("article.message--assistant .stream-text")].pop();
  if (!box) return;
  for (const tag of ["h2", "ul", "table", "pre"])
    if (box.querySelector(tag)) window.__formed[tag] = true;
  const code = box.querySelector(".stream-open pre code");  // a code block still open
  if (code && code.textContent.includes("return sum(")) window.__openCode = code.textContent;
  const paragraphs = box.querySelectorAll(":scope > div > p");
  const last = paragraphs[paragraphs.length - 1];
  if (last) {
    const top = box.closest("article").getBoundingClientRect().top;
    window.__last = [last.textContent, last.getBoundingClientRect().top - top];
    if (getComputedStyle(last, "::after").content !== "none") window.__caret = true;
  }
}
new MutationObserver(look).observe(document, { subtree: true, childList: true });
"""

# The last paragraph of the newest settled reply: its text, where it sits from the top of
# the reply, and its line height.
FINAL = """() => {
  const reply = [...document.querySelectorAll("article.message--assistant")].pop();
  const paragraphs = reply.querySelectorAll(".markdown > p");
  const last = paragraphs[paragraphs.length - 1];
  const style = getComputedStyle(last);
  const line = parseFloat(style.lineHeight) || 1.5 * parseFloat(style.fontSize);
  return [last.textContent, last.getBoundingClientRect().top - reply.getBoundingClientRect().top,
          line, getComputedStyle(last, "::after").content];
}"""


# Where the newest reply's heading sits, from the top of the reply.
HEADING = """() => {
  const reply = [...document.querySelectorAll("article.message--assistant")].pop();
  const heading = reply.querySelector(".markdown h2");
  return heading.getBoundingClientRect().top - reply.getBoundingClientRect().top;
}"""


def ask(page: Page, text: str) -> None:
    page.get_by_role("textbox", name="Message").fill(text)
    page.get_by_role("button", name="Send").click()


def newest_reply(page: Page):  # type: ignore[no-untyped-def]
    return page.locator("article.message--assistant").last


@pytest.mark.parametrize("look", LOOKS)
def test_a_reply_takes_its_form_as_it_streams_and_does_not_move_when_it_ends(tmp_path, look):
    # The simulator's [sim:html] reply: a heading, paragraphs, the XSS corpus (lists, a
    # table, a code block), a Python code block and a last paragraph.
    env = {**SIMULATED_CLAUDE, "SIMULATOR_LATENCY_MS": "8"}
    with served_app(tmp_path, **env) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(base_url=url, **LOOKS[look])
        context.add_init_script(WATCH)
        page = context.new_page()
        sign_up(page, "alice")
        ask(page, "Show me every kind of block [sim:html]")
        page.wait_for_function(
            "() => ['h2', 'ul', 'table', 'pre'].every((tag) => window.__formed[tag])",
            timeout=60_000,
        )
        # Formed while the reply was still being written: the page saw them in its stream.
        expect(newest_reply(page)).to_have_attribute("data-status", "complete", timeout=60_000)
        streamed_text, streamed_top = page.evaluate("window.__last")
        text, top, line, caret = page.evaluate(FINAL)
        assert streamed_text == text, "the last batch showed the whole last paragraph"
        assert abs(top - streamed_top) <= line, (streamed_top, top, line)
        assert page.evaluate("window.__caret"), "a typing cursor while it was written"
        # The Python code block was a code block while it was written, its text appended.
        assert page.evaluate("window.__openCode").startswith("def ")
        assert caret == "none", "no cursor once it has ended"
        # No raw Markdown on the page at any point of the end state.
        body = newest_reply(page).locator(".markdown")
        expect(body.locator("h2")).to_have_count(1)
        assert "## " not in body.inner_text() and "```" not in body.inner_text()
        browser.close()


def test_continue_keeps_the_reply_formatted_while_it_extends_it(tmp_path):
    env = {**SIMULATED_CLAUDE, "SIMULATOR_LATENCY_MS": "60", "THINKING_CUE_SECONDS": "60"}
    with served_app(tmp_path, **env) as url, sync_playwright() as playwright:
        db = sqlite3.connect(tmp_path / "app.sqlite3", isolation_level=None)
        browser = launch_chromium(playwright)
        page = browser.new_context(base_url=url).new_page()
        sign_up(page, "alice")
        db.execute(
            "UPDATE billing_catalogmodel SET max_output_tokens = 40 WHERE slug = ?", ["claude-4-6"]
        )
        ask(page, "Tell me a long story [sim:tokens=120]")
        reply = newest_reply(page)
        expect(reply).to_have_attribute("data-status", "cut_off", timeout=30_000)
        expect(reply.locator(".markdown h2")).to_have_count(1)
        before = page.evaluate(HEADING)
        reply.get_by_role("button", name="Continue").click()
        # While it goes on, the text so far stays formatted: the heading is a heading, in the
        # same place, and no Markdown shows as raw text.
        streaming = reply.locator(".stream-text")
        expect(streaming).to_be_visible(timeout=10_000)
        expect(streaming.locator("h2")).to_have_count(1)
        assert "## " not in streaming.inner_text()
        assert abs(page.evaluate(HEADING) - before) <= 1
        # The list the continuation writes takes its form as it arrives.
        expect(streaming.locator("ul li").first).to_be_visible(timeout=20_000)
        assert "- **" not in streaming.inner_text()
        expect(reply).to_have_attribute("data-status", "cut_off", timeout=30_000)
        browser.close()


# While the newest reply streams: whether a large block's tail showed text, and whether it
# ever showed anything but text (an element) or raw Markdown emphasis once formatted.
WATCH_TAIL = """
window.__tail = "";
window.__tailElements = 0;
new MutationObserver(() => {
  for (const tail of document.querySelectorAll(".stream-open > .stream-tail")) {
    if (tail.textContent) window.__tail = tail.textContent;
    window.__tailElements += tail.children.length;
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


def test_a_large_block_shows_its_latest_lines_as_text_then_formatted(tmp_path):
    # A small limit makes the reply's paragraphs and list "large": each is formatted up to
    # a render point, the text after it shown as text until the next, then as the final.
    env = {**SIMULATED_CLAUDE, "SIMULATOR_LATENCY_MS": "8", "STREAM_OPEN_LIMIT": "40"}
    with served_app(tmp_path, **env) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(base_url=url)
        context.add_init_script(WATCH_TAIL)
        page = context.new_page()
        sign_up(page, "alice")
        ask(page, "Tell me a long story [sim:tokens=300]")
        page.wait_for_function("() => window.__tail.length > 0", timeout=60_000)
        expect(newest_reply(page)).to_have_attribute("data-status", "complete", timeout=60_000)
        assert page.evaluate("window.__tailElements") == 0, "the tail is text only"
        body = newest_reply(page).locator(".markdown")
        expect(body.locator("h2")).to_have_count(1)
        expect(body.locator("ul li strong").first).to_be_visible()
        assert "**" not in body.inner_text() and "## " not in body.inner_text()
        assert body.locator(".stream-tail").count() == 0
        browser.close()


def test_a_large_tables_rows_are_appended_by_the_page(tmp_path):
    # A batch's rows come in a <template> (static/chat.js hands its rows to htmx): applied by
    # the page's htmx to a streaming reply's copy, the table gains exactly those rows.
    from unittest import mock

    from conversations import dom, frames, streaming_render
    from conversations.rendering import render_markdown
    from conversations.streaming_render import StreamRenderer

    text = "| a | b |\n|---|--:|\n" + "".join(f"| r{n} *x* | `{n}` |\n" for n in range(12))
    more = "".join(f"| s{n} **y** | <b>{n}</b> |\n" for n in range(5))
    with mock.patch.object(streaming_render, "OPEN_LIMIT", 64):
        renderer = StreamRenderer(text)
        reset = frames.stream_reset(999, 1, text)
        ops = renderer.feed(more)
    assert ops.rows and ops.open is None
    batch = frames.batch(999, 2, ops)
    with served_app(tmp_path) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_context(base_url=url).new_page()
        sign_up(page, "alice")
        page.evaluate(
            """([id, reset, batch]) => {
              const box = document.createElement("div");
              box.id = id;
              document.getElementById("messages").append(box);
              htmx.swap(document.body, reset, { swapStyle: "none" });
              htmx.swap(document.body, batch, { swapStyle: "none" });
            }""",
            [dom.element_id(999, "text"), reset, batch],
        )
        opened = f"#{dom.element_id(999, 'open')}"
        table = page.locator(f"{opened} > table")
        expect(table.locator("tbody tr")).to_have_count(17)
        final = render_markdown(text + more)
        shown = page.evaluate(f"document.querySelector('{opened} > table').outerHTML")
        assert shown + "\n" == final  # the one-shot render's table, row for row
        assert page.locator(f"{opened} b").count() == 0  # the <b> stayed text
        browser.close()
