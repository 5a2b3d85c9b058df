"""A reply survives a reload half-way and shows in a second tab, in a real browser: what the
page showed while streaming ends as the reply's one-shot render, element for element, and
that render is the upstream's text."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect, sync_playwright

from conversations.rendering import render_markdown
from llm.simulator.replies import reply_text

from .browser import SIMULATED_CLAUDE, launch_chromium, served_app
from .test_browser_chat import sign_up

pytestmark = pytest.mark.browser

# Records the streaming reply as the page shows it (formatted: its finished blocks, then
# the one being written), after every change, until the reply ends and its text box is
# replaced by the rendered reply.
WATCH_STREAM = """
document.addEventListener("DOMContentLoaded", function () {
  function seen() {
    var box = document.querySelector(".stream-text");
    if (box) window.__streamed = box.querySelector(".stream-done").innerHTML
      + box.querySelector(".stream-open").innerHTML;
  }
  new MutationObserver(seen).observe(document.body, {
    subtree: true, childList: true, characterData: true,
  });
  seen();
});
"""
PROMPT = "Tell me a long story, slowly [sim:tokens=360]"
ENV = {**SIMULATED_CLAUDE, "SIMULATOR_LATENCY_MS": "25"}  # about nine seconds


# The newest reply's final render, and `html` as this browser writes it, both without the
# Copy buttons chat.js adds to code blocks (the streamed copy has them too, or not yet).
AS_SHOWN = """html => {
  const strip = (el) => { el.querySelectorAll("button").forEach((b) => b.remove()); return el; };
  const reply = [...document.querySelectorAll("article.message--assistant .markdown")].pop();
  const made = document.createElement("div");
  made.innerHTML = html;
  const streamed = document.createElement("div");
  streamed.innerHTML = window.__streamed;
  return [strip(reply.cloneNode(true)).innerHTML, strip(made).innerHTML,
          strip(streamed).innerHTML];
}"""


def assert_streamed(page, expected: str) -> None:  # type: ignore[no-untyped-def]
    """What the page showed of the reply as it streamed, by the end, is the final render
    (nothing changed when it was swapped in), which is the one-shot render of `expected`."""
    final, one_shot, streamed = page.evaluate(AS_SHOWN, render_markdown(expected))
    assert streamed == final
    assert final == one_shot


def streamed_past(page, chars: int) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "n => { const b = document.querySelector('.stream-text');"
        " return b && b.textContent.length > n; }",
        arg=chars,
        timeout=20_000,
    )


def signed_in_and_asking(browser, url: str):  # type: ignore[no-untyped-def]
    """A page that records what it streams, signed up, that has sent PROMPT."""
    context = browser.new_context(base_url=url)
    context.add_init_script(WATCH_STREAM)
    page = context.new_page()
    sign_up(page, "alice")
    page.get_by_role("textbox", name="Message").fill(PROMPT)
    page.get_by_role("button", name="Send").click()
    return context, page


def test_a_reload_half_way_loses_nothing_and_repeats_nothing(tmp_path):
    expected = reply_text(PROMPT, tokens=360)
    with served_app(tmp_path, **ENV) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        _context, page = signed_in_and_asking(browser, url)
        streamed_past(page, len(expected) // 2)
        page.reload()
        reply = page.locator("article.message--assistant")
        assert reply.get_attribute("data-status") in {"pending", "streaming"}
        # The text so far comes formatted from the checkpoint, not as raw Markdown.
        expect(reply.locator(".stream-text h2")).to_have_count(1)
        expect(reply).to_have_attribute("data-status", "complete", timeout=30_000)
        assert_streamed(page, expected)
        expect(reply.locator(".markdown h2")).to_have_text(re.compile(r"About \w+"))
        browser.close()


def test_a_second_tab_shows_the_same_reply_streaming(tmp_path):
    expected = reply_text(PROMPT, tokens=360)
    with served_app(tmp_path, **ENV) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context, first = signed_in_and_asking(browser, url)
        expect(first).to_have_url(re.compile(r"/c/[0-9a-f-]+/$"))
        streamed_past(first, len(expected) // 4)
        second = context.new_page()
        second.goto(first.url)
        streamed_past(second, len(expected) // 3)  # it streams here too
        for page in (first, second):
            expect(page.locator("article.message--assistant")).to_have_attribute(
                "data-status", "complete", timeout=30_000
            )
            assert_streamed(page, expected)
        browser.close()
