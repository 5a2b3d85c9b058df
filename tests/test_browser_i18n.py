"""The page in the browser's language, a language picked by the user, and controls that
every user can find: a label on each, and a visible focus."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect, sync_playwright

from .browser import SIMULATED_CLAUDE, launch_chromium, served_app

pytestmark = pytest.mark.browser

# Every form control, and its accessible name as a screen reader would compute it (close
# enough: a <label>, aria-label, or a button's own text).
UNNAMED_CONTROLS = """
() => Array.from(document.querySelectorAll(
  "input:not([type=hidden]), select, textarea, button, summary, a[href]"
)).filter(el => el.offsetParent !== null || el.tagName === "SUMMARY").filter(el => {
  const named = (el.labels && el.labels.length) || el.getAttribute("aria-label")
    || (el.textContent || "").trim() || el.getAttribute("title");
  return !named;
}).map(el => el.outerHTML.slice(0, 120))
"""


def test_a_french_browser_gets_french_and_can_switch_to_english(tmp_path):
    env = {**SIMULATED_CLAUDE, "SIMULATOR_LATENCY_MS": "5"}
    with served_app(tmp_path, **env) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_context(base_url=url, locale="fr-FR").new_page()
        page.goto("/accounts/signup/")
        expect(page.get_by_role("heading", name="Créez votre compte")).to_be_visible()
        page.get_by_label("Nom d’utilisateur").fill("amelie")
        page.locator("#id_password1").fill("une-phrase-secrete-42")
        page.locator("#id_password2").fill("une-phrase-secrete-42")
        page.get_by_role("button", name="Inscription").click()

        expect(page.locator("html")).to_have_attribute("lang", "fr")
        expect(page.get_by_role("link", name="Nouvelle discussion")).to_be_visible()
        box = page.get_by_role("textbox", name="Message")
        box.fill("Bonjour [sim:error=401]")
        # Step 10: money written the French way.
        expect(page.locator("#cost-estimate")).to_have_text(
            re.compile(r"Prochain message : jusqu’à 0,\d+\s\$\.")
        )
        page.get_by_role("button", name="Envoyer").click()
        failed = page.locator("article.message--assistant")
        expect(failed).to_have_attribute("data-status", "failed")
        expect(failed.locator(".message-error")).to_have_text(
            "L’assistant est indisponible pour le moment. Un administrateur a été prévenu."
        )
        expect(page.get_by_role("status", name="Dépenses du jour")).to_contain_text("aujourd’hui")

        # The user's choice wins over the browser's, and is kept.
        page.get_by_label("Langue").select_option("en")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.get_by_role("link", name="New chat")).to_be_visible()
        page.reload()
        expect(page.get_by_role("button", name="Send")).to_be_visible()
        browser.close()


def test_every_control_has_a_name_and_focus_is_visible(tmp_path):
    env = {**SIMULATED_CLAUDE, "SIMULATOR_LATENCY_MS": "2"}
    with served_app(tmp_path, **env) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_context(base_url=url).new_page()
        from .test_browser_chat import sign_up

        sign_up(page, "alice")
        page.get_by_role("textbox", name="Message").fill("Hello there")
        page.keyboard.press("Enter")
        expect(page.locator("article.message--assistant")).to_have_attribute(
            "data-status", "complete"
        )
        page.reload()  # the conversation's own page, with its menu
        expect(page.locator(".copy-code").first).to_be_visible()
        # The context gauge: how much of the model's window the conversation fills.
        expect(page.get_by_role("meter", name="Context")).to_be_visible()
        expect(page.locator("#context-gauge")).to_contain_text("% of 128,000 tokens")
        page.locator(".conversation-menu summary").click()  # the menu's controls too
        assert page.evaluate(UNNAMED_CONTROLS) == []

        # Keyboard focus is drawn: the focused control gets an outline.
        page.locator(".conversation-menu summary").click()
        page.get_by_role("textbox", name="Message").focus()
        page.keyboard.press("Shift+Tab")
        outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
        assert outline not in {"none", ""}, outline
        assert re.match(
            r"\d", page.evaluate("() => getComputedStyle(document.activeElement).outlineWidth")
        )
        browser.close()
