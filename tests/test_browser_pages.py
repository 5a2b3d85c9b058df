"""The pages around the chat as a person sees them in Chromium: search with its marked
snippets, the friendly 403 and 404 pages, the sign-in and first sign-up pages, and the
support dashboard's charts at phone and desktop sizes (screenshots in the test's folder)."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
from playwright.sync_api import Locator, Page, expect, sync_playwright

from billing.meter import format_usd

from .browser import LOOKS, ROOT, launch_chromium, served
from .test_browser_chat import sign_up

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}

# Thirty days of service spend and a few failed requests of several kinds, and a helper
# in the Support group.
MAKE_LEDGERS = """
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from billing import meter
from billing.models import DailySpend, Reservation, UsageRecord
User = get_user_model()
helper = User.objects.create_user("helper", password="helper-passphrase-7", is_staff=True)
helper.groups.add(Group.objects.get(name="Support"))
alice = User.objects.get(username="alice")
today = meter.today()
for n in range(30):
    DailySpend.objects.create(scope="service", day=today - timedelta(days=n),
                              spent_micros=(n * 7_919) % 61_000 + 1_000)
reservation = Reservation.objects.create(
    user=alice, day=today, model="claude-4-6", input_price_per_1k_micros=1000,
    output_price_per_1k_micros=2000, input_tokens_estimate=10, max_tokens=10, amount_micros=30)
for n, kind in enumerate(["rate_limit"] * 5 + ["overloaded"] * 3 + ["timeout", "authentication"]):
    UsageRecord.objects.create(reservation=reservation, user=alice, model="claude-4-6",
                               day=today - timedelta(days=n % 9), outcome="failed",
                               error_kind=kind)
"""


def manage_shell(env: dict[str, str], code: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


def sign_in(page: Page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def boxes_apart(page: Page, found: Locator) -> list[dict[str, float]]:
    """The boxes of the visible elements `found`, asserting that none overlaps the next
    and that each lies inside the window."""
    boxes = found.evaluate_all(
        """els => els.filter(e => e.checkVisibility({visibilityProperty: true}))
                     .map(e => { const r = e.getBoundingClientRect();
                                 return {left: r.left, right: r.right, width: r.width}; })""",
    )
    width = page.viewport_size["width"]
    for box in boxes:
        assert box["width"] > 0 and box["left"] >= 0 and box["right"] <= width, box
    for before, after in itertools.pairwise(boxes):
        assert before["right"] + 4 <= after["left"], (before, after)
    return boxes


def test_sign_in_first_sign_up_and_the_friendly_error_pages(tmp_path):
    with served(tmp_path) as app, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        for scheme in ("light", "dark"):
            page = browser.new_page(base_url=app.url, color_scheme=scheme, viewport=PHONE)
            page.goto("/accounts/login/")
            expect(page).to_have_title("Sign in · Chat for claude-4-6")
            expect(page.locator(".brand")).to_have_text("Chat for claude-4-6")
            card = page.locator(".auth-card").bounding_box()
            assert abs(card["x"] + card["width"] / 2 - PHONE["width"] / 2) <= 1  # centred
            page.screenshot(path=tmp_path / f"sign-in-{scheme}.png")
            page.close()

        page = browser.new_page(base_url=app.url, viewport=DESKTOP)
        page.goto("/accounts/signup/")
        note = page.get_by_role("note")
        expect(note).to_have_text("The first account becomes the administrator.")
        page.screenshot(path=tmp_path / "first-sign-up.png")
        sign_up(page, "alice")

        # serve runs with DEBUG on: still the friendly page, in the app's layout.
        response = page.goto("/c/00000000-0000-4000-8000-000000000000/")
        assert response.status == 404
        expect(page.get_by_role("heading", level=1)).to_have_text("This page does not exist")
        expect(page.locator(".brand")).to_have_text("Chat for claude-4-6")
        page.screenshot(path=tmp_path / "404.png")
        page.get_by_role("link", name="Back to the chat").click()
        expect(page.get_by_role("textbox", name="Message")).to_be_visible()

        other = browser.new_page(base_url=app.url, viewport=PHONE)
        sign_up(other, "bob")  # not the first: a plain user
        response = other.goto("/support/")
        assert response.status == 403
        expect(other.get_by_role("heading", level=1)).to_have_text("You cannot open this page")
        expect(other.get_by_role("link", name="Back to the chat")).to_be_visible()
        other.screenshot(path=tmp_path / "403-phone.png")
        later = browser.new_page(base_url=app.url, viewport=PHONE)
        later.goto("/accounts/signup/")
        expect(later.get_by_role("heading", level=1)).to_have_text("Create your account")
        expect(later.get_by_role("note")).to_have_count(0)  # not the first account any more
        assert other.request.get("/favicon.ico").headers["content-type"] == "image/svg+xml"
        browser.close()


@pytest.mark.parametrize("look", LOOKS)
def test_capital_france_finds_the_conversation_with_a_marked_snippet(tmp_path, look):
    with served(tmp_path) as app, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(base_url=app.url, **LOOKS[look])
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        sign_up(page, "alice")
        manage_shell(
            app.env, "from tests.search_data import make_conversations\nmake_conversations()"
        )

        page.goto("/conversations/")
        search = page.get_by_role("searchbox", name="Search conversations")
        search.fill("capital France")
        search.press("Enter")
        hits = page.locator("#all-conversations li.search-hit")
        expect(hits).to_have_count(3)
        expect(hits.locator("> a")).to_have_text(
            ["Markup", "Geography homework", "France, <b>capital</b> of cheese"]
        )
        homework = hits.filter(has_text="Geography homework")
        expect(homework.locator(".snippet")).to_have_text(
            "Paris has been the capital of France since 987."
        )
        expect(homework.locator(".snippet mark")).to_have_text(["capital", "France"])
        markup = hits.filter(has_text="Markup").locator(".snippet")
        expect(markup).to_contain_text("<script>alert(1)</script> the capital of france")
        expect(markup.locator("mark")).to_have_text(["capital", "france"])
        assert page.locator("#all-conversations script, #all-conversations img").count() == 0
        # A mark stands out from the text around it.
        colours = page.eval_on_selector(
            ".snippet mark",
            "m => [getComputedStyle(m).backgroundColor,"
            " getComputedStyle(m.parentElement).backgroundColor]",
        )
        assert colours[0] != colours[1]
        page.screenshot(path=tmp_path / "search.png", full_page=True)

        page.set_viewport_size(PHONE)
        page.screenshot(path=tmp_path / "search-phone.png", full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        hits.filter(has_text="Geography homework").locator("> a").click()
        expect(page.get_by_text("Paris has been the capital of France since 987.")).to_be_visible()
        assert dialogs == []
        browser.close()


@pytest.mark.parametrize(("size", "scheme"), [(PHONE, "light"), (DESKTOP, "dark")])
def test_support_charts_have_a_scale_and_readable_labels(tmp_path, size, scheme):
    with served(tmp_path) as app, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(base_url=app.url)
        sign_up(page, "alice")
        manage_shell(app.env, MAKE_LEDGERS)
        support = browser.new_page(base_url=app.url, viewport=size, color_scheme=scheme)
        sign_in(support, "helper", "helper-passphrase-7")
        support.goto("/support/")
        expect(support.get_by_role("heading", name="Support dashboard")).to_be_visible()

        spend = support.locator("figure.chart").first
        scale = spend.locator(".chart-scale span")
        # The largest day is $0.061137: a round scale from $0.00 up to $0.08.
        expect(scale).to_have_text([format_usd(m) for m in (80_000, 60_000, 40_000, 20_000, 0)])
        for figure in scale.all():
            assert figure.bounding_box()["height"] >= 10  # real text, not a squeezed SVG
        days = boxes_apart(support, spend.locator(".chart-days .tick"))
        assert len(days) == (3 if size is PHONE else 5)
        meter = support.locator("meter.cap-meter").bounding_box()
        assert meter["width"] > 200 if size is DESKTOP else meter["width"] > 300

        kinds = support.locator("#errors-by-kind tbody td:first-child")
        expect(kinds).to_have_text(
            [
                "Rate-limited by the provider",
                "Provider overloaded",
                "Provider key refused",
                "Timed out",
            ]
        )
        assert support.evaluate("document.documentElement.scrollWidth") <= size["width"]
        support.screenshot(path=tmp_path / f"support-{size['width']}-{scheme}.png", full_page=True)
        browser.close()
