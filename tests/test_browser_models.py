"""A fresh install chats with the built-in model; people pick a model per conversation."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from .browser import SIMULATED_CLAUDE, launch_chromium, served_app
from .test_browser_chat import sign_up, watch_stream

pytestmark = pytest.mark.browser


@pytest.fixture
def browser_page():
    def open_page(url: str):
        playwright = sync_playwright().start()
        browser = launch_chromium(playwright)
        page = browser.new_context(base_url=url).new_page()
        return playwright, browser, page

    opened = []

    def factory(url: str) -> Page:
        playwright, browser, page = open_page(url)
        opened.append((playwright, browser))
        return page

    yield factory
    for playwright, browser in opened:
        browser.close()
        playwright.stop()


def test_a_fresh_install_answers_with_the_local_model(tmp_path, browser_page):
    with served_app(tmp_path) as url:  # no environment at all: the README's command
        page = browser_page(url)
        sign_up(page, "alice")
        # Only what can answer is offered: no key, so no claude-4-6.
        expect(page.get_by_label("Model").locator("option")).to_have_text(["SmolLM2 135M (local)"])
        page.get_by_role("textbox", name="Message").fill("What is the capital of France?")
        page.get_by_role("button", name="Send").click()
        lengths = watch_stream(page, timeout=60)
        assert len({n for n in lengths if n > 0}) >= 2, "the local reply streams in"
        reply = page.locator("article.message--assistant").last
        expect(reply).to_have_attribute("data-status", "complete")
        expect(reply.locator(".answered-by")).to_have_text("SmolLM2 135M (local)")
        # A real answer from a 135M model: its words vary, so only check there are some.
        assert len(reply.locator(".markdown").inner_text().split()) >= 3


def test_people_pick_the_model_per_conversation(tmp_path, browser_page):
    with served_app(tmp_path, SIMULATOR_LATENCY_MS="5", **SIMULATED_CLAUDE) as url:
        page = browser_page(url)
        sign_up(page, "bob")
        picker = page.get_by_label("Model")
        expect(picker).to_have_value("claude-4-6")
        expect(picker.locator("option")).to_have_count(2)
        picker.select_option(label="SmolLM2 135M (local)")
        page.get_by_role("textbox", name="Message").fill("Say hello.")
        page.get_by_role("button", name="Send").click()
        reply = page.locator("article.message--assistant").last
        expect(reply).to_have_attribute("data-status", "complete", timeout=60_000)
        expect(reply.locator(".answered-by")).to_have_text("SmolLM2 135M (local)")
        # The conversation keeps its model: after a reload the picker shows it.
        page.reload()
        expect(page.get_by_label("Model")).to_have_value("smollm2-135m")
        # Switching mid-conversation: the next reply comes from claude-4-6.
        page.get_by_label("Model").select_option("claude-4-6")
        page.get_by_role("textbox", name="Message").fill("And you? [sim:tokens=5]")
        page.get_by_role("button", name="Send").click()
        expect(page.locator("article.message--assistant .answered-by")).to_have_text(
            ["SmolLM2 135M (local)", "Claude 4.6"], timeout=30_000
        )
