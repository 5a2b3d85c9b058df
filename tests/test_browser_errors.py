"""Upstream failures as a person sees them in the browser: plain words, Retry, Continue."""

from __future__ import annotations

import re
import sqlite3

import pytest
from playwright.sync_api import expect, sync_playwright

from billing.errors import CATALOG
from llm.simulator.replies import count_tokens

from .browser import SIMULATED_CLAUDE, launch_chromium, served_app
from .test_browser_chat import sign_up

pytestmark = pytest.mark.browser
RAW = re.compile(r"\b(401|429|4\d\d|5\d\d)\b|[{}]|_error|request_id")


def test_failures_are_explained_in_words_and_a_cut_off_reply_continues(tmp_path):
    env = {**SIMULATED_CLAUDE, "SIMULATOR_LATENCY_MS": "5", "THINKING_CUE_SECONDS": "60"}
    with served_app(tmp_path, **env) as url, sync_playwright() as playwright:
        db = sqlite3.connect(tmp_path / "app.sqlite3", isolation_level=None)
        browser = launch_chromium(playwright)
        page = browser.new_context(base_url=url).new_page()
        sign_up(page, "alice")
        box = page.get_by_role("textbox", name="Message")
        replies = page.locator("article.message--assistant")

        def send(text: str) -> None:
            box.fill(text)
            page.get_by_role("button", name="Send").click()

        def settled(index: int, status: str):  # type: ignore[no-untyped-def]
            reply = replies.nth(index)
            expect(reply).to_have_attribute("data-status", status, timeout=20_000)
            return reply

        # A refused API key: the words of the catalog, no status, no JSON, no Retry.
        send("Hello [sim:error=401]")
        reply = settled(0, "failed")
        note = reply.locator(".message-error")
        expect(note).to_have_text(CATALOG["authentication"].user_message)
        assert not RAW.search(note.inner_text())
        expect(reply.get_by_role("button", name="Retry")).to_have_count(0)

        # The upstream stays busy through every automatic retry; Retry by hand then works.
        send("Busy? [sim:error=429x3] [sim:retry-after=0.2] [sim:tokens=5]")
        reply = settled(1, "failed")
        expect(reply.locator(".message-error")).to_have_text(CATALOG["rate_limit"].user_message)
        assert not RAW.search(reply.inner_text())
        reply.get_by_role("button", name="Retry").click()
        # Step 10: the new reply takes the failed one's place (the records keep both).
        answer = settled(1, "complete")
        expect(answer.locator(".markdown")).not_to_be_empty()
        expect(replies).to_have_count(2)
        expect(page.locator(".message-error")).to_have_count(1)  # the 401's only

        # A reply cut off at the length limit goes on in place with Continue.
        db.execute(
            "UPDATE billing_catalogmodel SET max_output_tokens = 30 WHERE slug = ?", ["claude-4-6"]
        )
        send("Tell me a long story [sim:tokens=70]")
        reply = settled(2, "cut_off")
        expect(reply.locator(".message-note")).to_have_text(CATALOG["cut_off"].user_message)
        first = reply.locator(".markdown").inner_text()
        reply.get_by_role("button", name="Continue").click()
        reply = settled(2, "cut_off")
        reply.get_by_role("button", name="Continue").click()
        reply = settled(2, "complete")
        expect(replies).to_have_count(3)  # the same reply, not a new one
        expect(reply.get_by_role("button", name="Continue")).to_have_count(0)
        text = reply.locator(".markdown").inner_text()
        assert len(text) > len(first) and text.startswith(first.split("\n")[0])
        assert (
            count_tokens(
                db.execute(
                    "SELECT content FROM conversations_message WHERE role = 'assistant' "
                    "ORDER BY id DESC LIMIT 1"
                ).fetchone()[0]
            )
            == 70
        )
        expect(reply.locator(".message-meta")).to_contain_text("70 out")

        # Out of the day's budget: the refusal says how much and when it resets.
        db.execute("INSERT INTO billing_userbudget (user_id, daily_cap_micros) VALUES (1, 1)")
        send("One more question")
        reply = settled(3, "failed")
        note = reply.locator(".message-error")
        expect(note).to_contain_text("daily budget")
        expect(note).to_contain_text("It resets at")
        assert not RAW.search(note.inner_text())
        browser.close()
        db.close()
