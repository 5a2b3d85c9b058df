"""A user with a tiny daily budget sends until refused, in a real browser."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect, sync_playwright

from .browser import SIMULATED_CLAUDE, launch_chromium, served_app
from .test_browser_chat import sign_up

pytestmark = pytest.mark.browser
CAP = 0.002  # dollars a day: room for a few short replies of claude-4-6


def dollars(text: str) -> float:
    return float(re.search(r"\$([0-9.]+) of", text).group(1))


def test_a_tiny_budget_is_never_overspent_and_the_refusal_is_in_words(tmp_path):
    env = {**SIMULATED_CLAUDE, "SIMULATOR_LATENCY_MS": "2", "USER_DAILY_CAP_USD": str(CAP)}
    with served_app(tmp_path, **env) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_context(base_url=url).new_page()
        sign_up(page, "alice")
        meter = page.get_by_role("status", name="Today's spend")
        expect(meter).to_have_text(re.compile(r"\$0\.00 of \$0\.002 today"))
        box = page.get_by_role("textbox", name="Message")
        estimate = page.locator("#cost-estimate")

        seen: list[float] = []
        for attempt in range(1, 10):
            box.fill(f"Tell me more, part {attempt}. [sim:tokens=200]")
            # Step 10: once the budget left cannot pay for a reply, the hint says so (before
            # a refusal, that not enough is left; after one, that sending is paused).
            expect(estimate).to_have_text(
                re.compile(r"Next message: up to \$|sending is paused|Not enough of today")
            )
            page.get_by_role("button", name="Send").click()
            reply = page.locator("article.message--assistant").nth(attempt - 1)
            expect(reply).not_to_have_attribute("data-status", re.compile("pending|streaming"))
            seen.append(dollars(meter.inner_text()))
            assert seen[-1] <= CAP, f"the meter shows more than the cap: {seen}"
            if reply.get_attribute("data-status") == "failed":
                break
        else:
            pytest.fail(f"never refused; the meter went {seen}")

        refusal = reply.locator(".message-error")
        expect(refusal).to_have_text(
            re.compile(
                r"You've used \$0\.\d{3,6} of your \$0\.002 daily budget\. "
                r"It resets at 00:00 UTC \(in (\d+ h )?\d+ min\)\."
            )
        )
        assert "{" not in refusal.inner_text() and "429" not in refusal.inner_text()
        assert len(seen) >= 2 and seen == sorted(seen)
        # The refused message is kept in the conversation, to send again tomorrow.
        expect(page.locator("article.message--user .message-body").last).to_have_text(
            re.compile(r"Tell me more, part \d+\.")
        )
        # Each paid reply shows its cost.
        expect(page.locator(".reply-cost").first).to_have_text(re.compile(r"\$0\.\d{2,6}"))
        browser.close()
