"""The staff alerts banner in the browser: on the chat page at desktop and phone size, it
takes its own room and the chat still fits the screen (the composer in view, nothing to
scroll); a plain user never sees it; Acknowledge clears it. Screenshots are kept in the
test's directory for a person to look at."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect, sync_playwright

from .browser import LOOKS, SIMULATED_CLAUDE, launch_chromium, served_app
from .test_browser_chat import sign_up

pytestmark = pytest.mark.browser

FITS = """() => ({
  scroll: document.documentElement.scrollHeight,
  height: window.innerHeight,
  composer: document.querySelector("textarea").getBoundingClientRect().bottom,
})"""


def test_the_staff_banner_fits_the_chat_and_is_cleared_by_acknowledge(tmp_path):
    env = {**SIMULATED_CLAUDE, "SIMULATOR_LATENCY_MS": "5", "ALERT_EMAILS": ""}
    with served_app(tmp_path, **env) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        # The first account is the administrator; the second, a plain user.
        admin_page = browser.new_context(base_url=url, **LOOKS["desktop-light"]).new_page()
        sign_up(admin_page, "carol")
        admin_page.get_by_role("textbox", name="Message").fill("Hello [sim:error=401]")
        admin_page.get_by_role("button", name="Send").click()
        expect(admin_page.locator("article.message--assistant")).to_have_attribute(
            "data-status", "failed", timeout=20_000
        )
        user_page = browser.new_context(base_url=url, **LOOKS["phone"]).new_page()
        sign_up(user_page, "alice")
        expect(user_page.locator(".staff-alerts")).to_have_count(0)

        for look in ("desktop-light", "desktop-dark", "phone"):
            context = browser.new_context(base_url=url, **LOOKS[look])
            context.add_cookies(admin_page.context.cookies())
            page = context.new_page()
            page.goto("/")
            banner = page.locator(".staff-alerts")
            expect(banner).to_be_visible()
            expect(banner).to_contain_text("The provider refused the API key")
            expect(banner.get_by_role("button", name="Acknowledge")).to_be_visible()
            fits = page.evaluate(FITS)
            assert fits["scroll"] <= fits["height"] + 1, (look, fits)
            assert fits["composer"] <= fits["height"], (look, fits)
            page.screenshot(path=str(tmp_path / f"alerts-{look}.png"))
            context.close()

        admin_page.goto("/admin/")
        expect(admin_page.locator(".staff-alerts")).to_be_visible()
        admin_page.screenshot(path=str(tmp_path / "alerts-admin.png"))
        admin_page.locator(".staff-alerts").get_by_role("button", name="Acknowledge").click()
        expect(admin_page.locator(".staff-alerts")).to_have_count(0)
        admin_page.goto("/")
        expect(admin_page.locator(".staff-alerts")).to_have_count(0)
        browser.close()
