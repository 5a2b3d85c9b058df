"""A person signs up, chats and watches the reply stream in, in a real browser."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from llm.simulator.replies import reply_text

from .browser import SIMULATED_CLAUDE, launch_chromium, served_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    # 40 ms per token: slow enough to watch the reply grow.
    with served_app(
        tmp_path_factory.mktemp("app"), SIMULATOR_LATENCY_MS="40", **SIMULATED_CLAUDE
    ) as url:
        yield url


@pytest.fixture
def page(app_url):
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(base_url=app_url)
        page = context.new_page()
        yield page
        context.close()
        browser.close()


def sign_up(page: Page, username: str) -> None:
    page.goto("/accounts/signup/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill("a-long-passphrase-42")
    page.get_by_label("Password confirmation").fill("a-long-passphrase-42")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("textbox", name="Message")).to_be_visible()


# The status of the newest reply, the length of its streamed text and of the finished
# blocks of it, read in one go.
_STREAM_STATE = """() => {
  const reply = [...document.querySelectorAll("article.message--assistant")].pop();
  if (!reply) return null;
  const text = reply.querySelector(".stream-text");
  const done = reply.querySelector(".stream-done");
  return [reply.dataset.status, text ? text.textContent.length : null,
          done ? done.textContent.length : 0];
}"""


def watch_stream(page: Page, timeout: float = 30, finished: list[int] | None = None) -> list[int]:
    """Poll the newest reply until it ends; return the lengths its text went through (and
    put those of its finished blocks in `finished`)."""
    lengths: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = page.evaluate(_STREAM_STATE)
        if state and state[1] is None:
            return lengths
        if state:
            lengths.append(state[1])
            if finished is not None:
                finished.append(state[2])
        time.sleep(0.03)
    raise AssertionError(f"the reply did not finish in {timeout}s: {lengths[-5:]}")


def test_sign_up_send_and_watch_the_reply_grow(page: Page):
    sign_up(page, "alice")
    prompt = "What is the capital of France?"
    box = page.get_by_role("textbox", name="Message")
    box.fill(prompt)
    page.get_by_role("button", name="Send").click()

    reply = page.locator("article.message--assistant").last
    finished: list[int] = []
    lengths = watch_stream(page, finished=finished)
    growing = sorted({n for n in lengths if n > 0})
    assert len(growing) >= 3, f"the reply should visibly grow, saw lengths {lengths}"
    # Formatted as it streams, the block being written may lose a mark as it takes form
    # (`**bold` becomes bold), but a finished block is never taken back or changed.
    assert finished == sorted(finished), "finished blocks only ever grow"
    assert len(set(finished)) >= 2, f"blocks finish as the reply goes, saw {finished}"

    expect(reply).to_have_attribute("data-status", "complete")
    expect(reply.locator(".markdown h2")).to_be_visible()  # rendered Markdown
    expect(reply.locator("pre code")).to_be_visible()
    # The address bar follows the new conversation; the list shows it; the box is empty.
    expect(page).to_have_url(re.compile(r"/c/[0-9a-f-]{36}/$"))
    expect(page.get_by_role("navigation", name="Conversations")).to_contain_text(
        "What is the capital of France?"
    )
    expect(box).to_have_value("")

    final_text = reply.locator(".markdown").inner_text()
    page.reload()
    expect(page.locator("article.message--user .message-body")).to_have_text(prompt)
    assert page.locator("article.message--assistant .markdown").inner_text() == final_text
    assert "You asked" in final_text and reply_text(prompt).startswith("## ")


def test_enter_sends_and_shift_enter_makes_a_new_line(page: Page):
    sign_up(page, "bob")
    box = page.get_by_role("textbox", name="Message")
    box.click()
    box.type("first line")
    box.press("Shift+Enter")
    box.type("second line [sim:tokens=5]")
    expect(box).to_have_value("first line\nsecond line [sim:tokens=5]")
    box.press("Enter")
    expect(page.locator("article.message--user .message-body")).to_have_text(
        "first line\nsecond line [sim:tokens=5]"
    )
    expect(page.locator("article.message--assistant")).to_have_attribute(
        "data-status", "complete", timeout=15000
    )
    # A new chat starts empty, and the old one is still in the list.
    page.get_by_role("link", name="New chat").click()
    expect(page.locator("article.message")).to_have_count(0)
    expect(page.locator("#conversation-list").get_by_role("link")).to_have_count(1)
