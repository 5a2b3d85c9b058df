"""Money hints as a person reads them in the browser (Step 10): the cost of the next
message for the chosen model, the conversation's longest reply and the budget left; Retry
in the failed reply's place; a French page with no English notice."""

from __future__ import annotations

import math
import re
import sqlite3

import pytest
from django.utils import translation
from playwright.sync_api import expect, sync_playwright

from billing.catalog import MESSAGE_OVERHEAD_TOKENS, estimate_tokens
from billing.errors import CATALOG
from billing.meter import format_usd

from .browser import LOOKS, SIMULATED_CLAUDE, launch_chromium, served_app
from .test_browser_chat import sign_up
from .test_browser_features import open_menu

pytestmark = pytest.mark.browser
PRICE_IN, PRICE_OUT = 1000, 2000  # claude-4-6, micro-dollars per 1,000 tokens
ENGLISH = re.compile(r"You.ve|You had|The model|The service|Please|It resets|Try|Queued")


def typed(text: str) -> int:
    return estimate_tokens(text) + MESSAGE_OVERHEAD_TOKENS


def cost(input_tokens: int, output_tokens: int) -> int:
    return math.ceil((input_tokens * PRICE_IN + output_tokens * PRICE_OUT) / 1000)


@pytest.mark.parametrize("look", LOOKS)
def test_the_next_message_costs_what_the_model_the_setting_and_the_budget_allow(tmp_path, look):
    env = {**SIMULATED_CLAUDE, "SIMULATOR_LATENCY_MS": "2", "THINKING_CUE_SECONDS": "60"}
    with served_app(tmp_path, **env) as url, sync_playwright() as playwright:
        db = sqlite3.connect(tmp_path / "app.sqlite3", isolation_level=None)
        browser = launch_chromium(playwright)
        page = browser.new_context(base_url=url, **LOOKS[look]).new_page()
        sign_up(page, "alice")
        box = page.get_by_role("textbox", name="Message")
        estimate = page.locator("#cost-estimate")
        picker = page.get_by_label("Model", exact=True)

        def history() -> int:
            return db.execute(
                "SELECT SUM(context_tokens) FROM conversations_message WHERE superseded = 0"
            ).fetchone()[0]

        # Before the first message: the picker's model, its longest reply (4,096 tokens).
        text = "Hello there, how are you?"
        box.fill(text)
        expect(estimate).to_have_text(f"Next message: up to {format_usd(cost(typed(text), 4096))}.")
        # A free model costs nothing, whatever is typed.
        picker.select_option("smollm2-135m")
        expect(estimate).to_have_text("Next message: free with this model.")
        picker.select_option("claude-4-6")
        expect(estimate).to_have_text(f"Next message: up to {format_usd(cost(typed(text), 4096))}.")

        # After the first reply, with no reload: the history counts, the gauge is live.
        box.fill("Hello there [sim:tokens=5]")
        page.get_by_role("button", name="Send").click()
        reply = page.locator("article.message--assistant").first
        expect(reply).to_have_attribute("data-status", "complete", timeout=20_000)
        gauge = page.locator("#context-gauge")
        if look == "phone":  # the phone's one-row header shows the gauge only when it warns
            expect(gauge).not_to_have_attribute("hidden", "")
        else:
            expect(gauge).to_be_visible()
        expect(gauge).to_contain_text("<1% of 128,000 tokens")
        expect(estimate).to_have_text(f"Next message: up to {format_usd(cost(history(), 4096))}.")

        # A $0.002 budget: the figure is the budget left, and says so.
        db.execute("INSERT INTO billing_userbudget (user_id, daily_cap_micros) VALUES (1, 2000)")
        page.reload()
        spent = db.execute("SELECT spent_micros FROM billing_dailyspend WHERE scope = 'user:1'")
        left = 2000 - spent.fetchone()[0]
        box.fill(text)
        expect(estimate).to_have_text(
            f"Next message: up to {format_usd(left)} (your budget left today)."
        )
        assert cost(history() + typed(text), 4096) > left

        # The conversation's longest reply, once its settings are saved: 60 tokens.
        open_menu(page)  # Settings… in the Conversation menu (a dialog now)
        page.get_by_label("Max output tokens").fill("60")
        page.get_by_role("button", name="Save settings").click()
        expect(page.get_by_label("Max output tokens")).to_have_value("60")
        box.fill(text)
        expected = cost(history() + typed(text), 60)
        assert expected < left
        expect(estimate).to_have_text(f"Next message: up to {format_usd(expected)}.")
        browser.close()
        db.close()


@pytest.mark.parametrize("look", LOOKS)
def test_retry_replaces_the_failed_reply_and_a_french_page_reads_french(tmp_path, look):
    env = {**SIMULATED_CLAUDE, "SIMULATOR_LATENCY_MS": "2", "THINKING_CUE_SECONDS": "60"}
    with served_app(tmp_path, **env) as url, sync_playwright() as playwright:
        db = sqlite3.connect(tmp_path / "app.sqlite3", isolation_level=None)
        browser = launch_chromium(playwright)
        page = browser.new_context(base_url=url, **LOOKS[look]).new_page()
        sign_up(page, "alice")
        box = page.get_by_role("textbox", name="Message")
        replies = page.locator("article.message--assistant")

        def send(text: str) -> None:
            box.fill(text)
            page.get_by_role("button", name="Send").click()

        # Retry: the new reply takes the failed one's place; one box, not two.
        send("Hi [sim:error=500x3] [sim:tokens=5]")
        expect(replies.first).to_have_attribute("data-status", "failed", timeout=30_000)
        expect(replies.first.locator(".message-meta")).not_to_contain_text("0 in")
        replies.first.get_by_role("button", name="Retry").click()
        expect(replies).to_have_count(1)
        expect(replies.first).to_have_attribute("data-status", "complete", timeout=20_000)
        expect(page.locator(".message-error")).to_have_count(0)
        page.reload()
        expect(replies).to_have_count(1)
        assert db.execute(
            "SELECT status, superseded FROM conversations_message WHERE role = 'assistant' "
            "ORDER BY id"
        ).fetchall() == [("failed", 1), ("complete", 0)]

        # An upstream error and a budget refusal, both while the page is in English.
        send("Hi again [sim:error=400]")
        expect(replies.nth(1)).to_have_attribute("data-status", "failed", timeout=20_000)
        db.execute("INSERT INTO billing_userbudget (user_id, daily_cap_micros) VALUES (1, 1)")
        send("One more")
        refused = replies.nth(2)
        expect(refused).to_have_attribute("data-status", "failed", timeout=20_000)
        expect(refused.locator(".message-error")).to_contain_text("You've used")
        # No Retry before the reset; the meter and the composer's hint say sending is paused.
        expect(refused.get_by_role("button", name="Retry")).to_have_count(0)
        expect(page.locator("#spend-meter")).to_have_class(re.compile("spend-meter--paused"))
        expect(page.locator("#cost-estimate")).to_contain_text("sending is paused until 00:00")
        # Sending again with this model waits for the reset; what was typed stays.
        send("Still there?")
        expect(box).to_have_value("Still there?")
        expect(page.locator("article.message--user")).to_have_count(3)
        expect(replies).to_have_count(3)
        # A free model still answers: the text typed goes now, once.
        page.get_by_label("Model", exact=True).select_option("smollm2-135m")
        expect(page.locator("#cost-estimate")).to_have_text("Next message: free with this model.")
        page.get_by_role("button", name="Send").click()
        expect(replies.nth(3)).not_to_have_attribute(
            "data-status", re.compile("pending|streaming"), timeout=120_000
        )
        expect(page.locator("article.message--user")).to_have_count(4)
        expect(page.locator("article.message--user .message-body").last).to_have_text(
            "Still there?"
        )

        # The reader chooses French: every notice reads French, money the French way.
        if look == "phone":  # the language list is in the drawer, behind the menu button
            page.get_by_role("button", name="Conversations").click()
        page.get_by_label("Language").select_option("fr")
        expect(page.locator("html")).to_have_attribute("lang", "fr")
        with translation.override("fr"):
            invalid = str(CATALOG["invalid_request"].words)
        expect(replies.nth(1).locator(".message-note")).to_have_text(invalid)
        expect(refused.locator(".message-note")).to_have_text(
            re.compile(
                r"Vous avez utilisé 0,\d+\s\$ de votre budget quotidien de 0,000001\s\$\. "
                r"Il se renouvelle à 00:00 UTC \(dans (\d+ h )?\d+ min\)\."
            )
        )
        for note in page.locator(".message-note").all():
            assert not ENGLISH.search(note.inner_text()), note.inner_text()
        expect(page.locator("#spend-meter")).to_contain_text("l’envoi est suspendu jusqu’à 00:00")
        page.get_by_label("Modèle", exact=True).select_option("claude-4-6")
        expect(page.locator("#cost-estimate")).to_contain_text("l’envoi est suspendu")
        browser.close()
        db.close()


def test_money_held_pauses_nothing_and_every_tab_learns_the_new_spend(tmp_path):
    """The review of Step 10: money held by a reply being written is not "used up" (the bar
    is what was spent, sending is not blocked, the hint says why the next one cannot be
    paid yet), and a refusal in one tab pauses the person's other tab at once."""
    env = {**SIMULATED_CLAUDE, "SIMULATOR_LATENCY_MS": "2", "THINKING_CUE_SECONDS": "60"}
    with served_app(tmp_path, **env) as url, sync_playwright() as playwright:
        db = sqlite3.connect(tmp_path / "app.sqlite3", isolation_level=None)
        browser = launch_chromium(playwright)
        context = browser.new_context(base_url=url)
        page = context.new_page()
        sign_up(page, "alice")
        box = page.get_by_role("textbox", name="Message")
        box.fill("Hello [sim:tokens=5]")
        page.get_by_role("button", name="Send").click()
        replies = page.locator("article.message--assistant")
        expect(replies.first).to_have_attribute("data-status", "complete", timeout=30_000)

        # Another tab's reply holds all but 10 micro-dollars of the $5.00.
        (spent,) = db.execute(
            "SELECT spent_micros FROM billing_dailyspend WHERE scope = 'user:1'"
        ).fetchone()
        db.execute(
            "UPDATE billing_dailyspend SET reserved_micros = ? WHERE scope = 'user:1'",
            (5_000_000 - spent - 10,),
        )
        page.reload()
        meter = page.locator("#spend-meter")
        expect(meter).not_to_have_class(re.compile("spend-meter--paused"))
        expect(meter.locator("meter")).to_have_attribute("value", "0")  # spent, not held
        expect(meter).not_to_contain_text("used up")
        box.fill("One more")
        expect(page.locator("#cost-estimate")).to_contain_text(
            "Replies still being written hold $4.9"
        )
        # Sending is not blocked: the meter refuses it, says why, and offers Retry.
        page.get_by_role("button", name="Send").click()
        held = replies.nth(1)
        expect(held).to_have_attribute("data-status", "failed", timeout=20_000)
        expect(held.locator(".message-note")).to_contain_text("Try again when they finish.")
        expect(held.get_by_role("button", name="Retry")).to_have_count(1)
        expect(meter).not_to_have_class(re.compile("spend-meter--paused"))

        # A second tab, on a new chat; the first is refused for good: both pause at once.
        db.execute("UPDATE billing_dailyspend SET reserved_micros = 0 WHERE scope = 'user:1'")
        db.execute("INSERT INTO billing_userbudget (user_id, daily_cap_micros) VALUES (1, 1)")
        other = context.new_page()
        other.goto("/")
        other_meter = other.locator("#spend-meter")
        expect(other_meter).to_have_attribute("data-paused", "true")  # spent >= its new cap
        db.execute(
            "UPDATE billing_userbudget SET daily_cap_micros = ? WHERE user_id = 1", (spent + 1,)
        )
        other.reload()
        expect(other_meter).to_have_attribute("data-paused", "false")
        expect(other.locator("#cost-estimate")).to_contain_text("Not enough of today's budget")
        box.fill("Last one")
        page.get_by_role("button", name="Send").click()
        expect(replies.nth(2)).to_have_attribute("data-status", "failed", timeout=20_000)
        expect(replies.nth(2).locator(".message-note")).to_contain_text("You've used")
        # The other tab learns it without a reload: paused, in words, sending blocked.
        expect(other_meter).to_have_class(re.compile("spend-meter--paused"))
        expect(other_meter).to_contain_text("Your daily budget is used up: sending is paused")
        other_box = other.get_by_role("textbox", name="Message")
        other_box.fill("Still there?")
        other.get_by_role("button", name="Send").click()
        expect(other_box).to_have_value("Still there?")
        expect(other.locator("article.message--user")).to_have_count(0)
        browser.close()
        db.close()
