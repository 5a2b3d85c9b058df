"""Support signs in and reads the dashboard: its figures and charts are the database's."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect, sync_playwright

from billing.meter import format_usd

from .browser import ROOT, SIMULATED_CLAUDE, launch_chromium, served
from .test_browser_chat import sign_up

pytestmark = pytest.mark.browser

MAKE_SUPPORT = """
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
user = get_user_model().objects.create_user("helper", password="helper-passphrase-7", is_staff=True)
user.groups.add(Group.objects.get(name="Support"))
"""


def test_support_sees_a_dashboard_that_matches_the_database(tmp_path):
    env = {**SIMULATED_CLAUDE, "SIMULATOR_LATENCY_MS": "2"}
    with served(tmp_path, **env) as app, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_context(base_url=app.url).new_page()
        sign_up(page, "alice")
        box = page.get_by_role("textbox", name="Message")
        replies = page.locator("article.message--assistant")
        for n, (text, status) in enumerate(
            [("Hello [sim:tokens=30]", "complete"), ("Again [sim:error=401]", "failed")]
        ):
            box.fill(text)
            page.get_by_role("button", name="Send").click()
            expect(replies.nth(n)).to_have_attribute("data-status", status)
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", MAKE_SUPPORT],
            cwd=ROOT,
            env=app.env,
            check=True,
            capture_output=True,
        )

        support = browser.new_context(base_url=app.url).new_page()
        support.goto("/accounts/login/?next=/support/")
        support.get_by_label("Username").fill("helper")
        support.get_by_label("Password").fill("helper-passphrase-7")
        support.get_by_role("button", name="Sign in").click()
        expect(support.get_by_role("heading", name="Support dashboard")).to_be_visible()

        db = sqlite3.connect(tmp_path / "app.sqlite3")
        today = datetime.now(UTC).date().isoformat()
        (spent,) = db.execute(
            "SELECT spent_micros FROM billing_dailyspend WHERE scope = 'service' AND day = ?",
            [today],
        ).fetchone()
        errors = db.execute(
            "SELECT error_kind, COUNT(*) FROM billing_usagerecord WHERE error_kind != '' "
            "GROUP BY error_kind"
        ).fetchall()
        (requests,) = db.execute("SELECT COUNT(*) FROM billing_usagerecord").fetchone()
        db.close()
        assert spent > 0 and errors == [("authentication", 1)]

        expect(support.locator("#service-spend")).to_have_text(f"{format_usd(spent)} of $100.00")
        spend_bars = support.get_by_role("img", name="Service spend per day").locator("rect")
        expect(spend_bars).to_have_count(30)
        today_bar = spend_bars.last
        expect(today_bar).to_have_attribute("data-day", today)
        expect(today_bar).to_have_attribute("data-value", str(spent))
        assert float(today_bar.get_attribute("height")) > 0  # the tallest bar: full height
        error_bars = support.get_by_role("img", name="Failed upstream requests per day")
        expect(error_bars.locator("rect").last).to_have_attribute("data-value", "1")
        expect(support.locator("#errors-by-kind")).to_contain_text("Provider key refused")
        expect(support.locator("#top-users")).to_contain_text("alice")
        expect(support.locator("#requests")).to_have_text(str(requests))

        # Support has no way into the service settings or the audit log.
        assert support.goto("/admin/billing/servicesettings/").status == 403
        browser.close()
