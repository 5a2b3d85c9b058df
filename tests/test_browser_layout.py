"""The chat page's frame as a person sees it, at desktop size in light and dark and on a
phone: the conversation list (a drawer on phones), the header, the Conversation menu and
its dialogs, and the search field."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from .browser import ROOT, SIMULATED_CLAUDE, Served, launch_chromium, served
from .test_browser_chat import sign_up

pytestmark = pytest.mark.browser

ENV = {**SIMULATED_CLAUDE, "SIMULATOR_LATENCY_MS": "5"}
SETTLE = 20_000
DESKTOP = {"viewport": {"width": 1440, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
CONVERSATION_URL = re.compile(r"/c/[0-9a-f-]{36}/$")
# Whether an element is wholly inside what the screen shows (not cut off at any edge).
IN_VIEW = """el => { const r = el.getBoundingClientRect();
  return r.width > 0 && r.height > 0 && r.left >= 0 && r.top >= 0
    && r.right <= innerWidth && r.bottom <= innerHeight; }"""
# Whether a text field's placeholder fits in the field (its content box).
PLACEHOLDER_FITS = """el => { const s = getComputedStyle(el);
  const c = document.createElement("canvas").getContext("2d");
  c.font = `${s.fontStyle} ${s.fontWeight} ${s.fontSize} ${s.fontFamily}`;
  const room = el.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
  return c.measureText(el.placeholder).width <= room; }"""

# Conversations of alice's: "Topic 01" the newest … "Topic 30" the oldest; spread over the
# last weeks so every date group has some.
SEED = """
import datetime
from django.contrib.auth import get_user_model
from django.utils import timezone
from conversations.models import Conversation
alice = get_user_model().objects.get(username="alice")
now = timezone.now()
midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
# Whatever the time of day: Topics 1-3 today, 4-6 yesterday, 7-12 in the week before,
# the rest older; newest first in the order of their numbers.
for n in range(1, 31):
    c = Conversation.objects.create(owner=alice, model="claude-4-6", title=f"Topic {n:02}")
    if n <= 3:
        when = now - datetime.timedelta(seconds=n)
    elif n <= 6:
        when = midnight - datetime.timedelta(hours=n)
    else:
        when = midnight - datetime.timedelta(days=n - 5)
    Conversation.objects.filter(pk=c.pk).update(updated_at=when)
"""


def seed(app: Served) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SEED],
        cwd=ROOT,
        env=app.env,
        check=True,
        capture_output=True,
    )


def send(page: Page, text: str) -> None:
    page.get_by_role("textbox", name="Message").fill(text)
    page.get_by_role("button", name="Send").click()


def settled(page: Page, number: int = 1) -> None:
    found = page.locator("article.message--assistant").nth(number - 1)
    expect(found).to_have_attribute("data-status", "complete", timeout=SETTLE)


def menu_item(page: Page, name: str):  # type: ignore[no-untyped-def]
    """An item of the open Conversation menu (a link or a button), by its words."""
    exact = re.compile(f"^{re.escape(name)}$")
    return page.locator(".menu-items").locator("a, button", has_text=exact)


def in_view(page: Page, locator) -> bool:  # type: ignore[no-untyped-def]
    return bool(locator.evaluate(IN_VIEW))


def wait_in_view(page: Page, locator) -> None:  # type: ignore[no-untyped-def]
    """Wait until the element is wholly on screen (a drawer slides in)."""
    page.wait_for_function(IN_VIEW, arg=locator.element_handle(), timeout=5_000)


def focus_in(page: Page, selector: str) -> bool:
    return bool(page.evaluate(f"() => !!document.activeElement.closest({selector!r})"))


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_on_a_phone_the_list_is_a_drawer_that_reaches_the_30th_conversation(tmp_path, scheme):
    with served(tmp_path, **ENV) as app, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(base_url=app.url, color_scheme=scheme, **PHONE)
        page = context.new_page()
        sign_up(page, "alice")
        seed(app)
        page.goto("/")
        drawer = page.get_by_role("navigation", name="Conversations")
        toggle = page.get_by_role("button", name="Conversations")
        expect(drawer).to_be_hidden()
        # The chat gets the screen: the message box is in view, under a one-row header.
        assert in_view(page, page.get_by_role("textbox", name="Message"))
        assert page.locator(".chat-header").bounding_box()["height"] < 64

        toggle.click()
        expect(drawer).to_be_visible()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        wait_in_view(page, drawer)
        listing = page.locator("#conversation-list")
        box = listing.bounding_box()
        assert box["height"] > 300, box  # the list has room (it was 0 px tall)
        assert listing.evaluate("el => el.scrollHeight > el.clientHeight")  # and scrolls
        expect(listing.get_by_role("heading")).to_have_text(
            ["Today", "Yesterday", "Previous 7 days", "Older"]
        )
        last = drawer.get_by_role("link", name="Topic 30")
        assert not in_view(page, last)
        listing.evaluate("el => { el.scrollTop = el.scrollHeight; }")
        assert in_view(page, last)
        assert page.evaluate("scrollY") == 0  # the list scrolled, not the page
        last.click()
        expect(page).to_have_url(CONVERSATION_URL)
        expect(page.get_by_role("heading", level=1)).to_have_text("Topic 30")
        expect(drawer).to_be_hidden()

        # Focus stays in the open drawer, Escape closes it and gives focus back.
        toggle.click()
        expect(drawer).to_be_visible()
        expect(drawer.get_by_role("link", name="Topic 30")).to_be_focused()  # where you are
        for _ in range(45):
            page.keyboard.press("Tab")
            assert focus_in(page, "#sidebar"), page.evaluate("document.activeElement.outerHTML")
        for _ in range(3):
            page.keyboard.press("Shift+Tab")
            assert focus_in(page, "#sidebar")
        page.keyboard.press("Escape")
        expect(drawer).to_be_hidden()
        expect(toggle).to_be_focused()
        expect(toggle).to_have_attribute("aria-expanded", "false")
        # A tap beside the drawer closes it too; so does its Close button.
        toggle.click()
        expect(drawer).to_be_visible()
        page.mouse.click(380, 420)
        expect(drawer).to_be_hidden()
        toggle.click()
        drawer.get_by_role("button", name="Close").click()
        expect(drawer).to_be_hidden()
        expect(toggle).to_be_focused()
        browser.close()


def test_on_a_phone_the_header_is_one_row_with_the_title_cut_short(tmp_path):
    with served(tmp_path, **ENV) as app, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_context(base_url=app.url, **PHONE).new_page()
        sign_up(page, "alice")
        long = "Why do penguins huddle together in the Antarctic winter for so long"
        send(page, f"{long} [sim:tokens=20]")
        settled(page)
        page.reload()
        title = page.get_by_role("heading", level=1)
        expect(title).to_contain_text("Why do penguins huddle together")
        full = title.text_content()
        expect(title).to_have_attribute("title", full)  # the full title as a tooltip
        assert title.evaluate("el => el.scrollWidth > el.clientWidth")  # cut short …
        assert title.evaluate("el => getComputedStyle(el).textOverflow") == "ellipsis"  # …
        parts = [
            page.get_by_role("button", name="Conversations"),
            title,
            page.locator("#model-name"),
            page.get_by_role("button", name="Conversation menu"),
        ]
        expect(parts[2]).to_have_text("Claude 4.6")
        boxes = [part.bounding_box() for part in parts]
        middles = [box["y"] + box["height"] / 2 for box in boxes]
        assert max(middles) - min(middles) < 8, boxes  # one row
        assert all(in_view(page, part) for part in parts)
        lefts = [box["x"] for box in boxes]
        assert lefts == sorted(lefts), boxes  # in that order
        browser.close()


def test_on_a_phone_every_conversation_menu_action_is_reachable_and_works(tmp_path):
    with served(tmp_path, **ENV) as app, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_context(base_url=app.url, accept_downloads=True, **PHONE).new_page()
        sign_up(page, "alice")
        send(page, "Tell me about walruses [sim:tokens=20]")
        settled(page)
        expect(page).to_have_url(CONVERSATION_URL)
        conversation = page.url
        menu_button = page.get_by_role("button", name="Conversation menu")

        def choose(name: str) -> None:
            menu_button.click()
            item = menu_item(page, name)
            expect(item).to_be_visible()
            assert in_view(page, item), name
            item.click()

        # Every item is on screen when the menu opens (a chat its first message opened).
        menu_button.click()
        items = page.locator(".menu-items li")
        expect(items).to_have_text(
            ["Rename…", "Settings…", "Export Markdown", "Export JSON", "Archive", "Delete…"]
        )
        for n in range(items.count()):
            assert in_view(page, items.nth(n)), items.nth(n).text_content()
        assert in_view(page, page.locator(".menu-items"))
        page.keyboard.press("Escape")
        expect(items.first).to_be_hidden()
        expect(menu_button).to_be_focused()

        # Rename: a dialog; Cancel and Escape close it, Rename renames.
        choose("Rename…")
        dialog = page.get_by_role("dialog", name="Rename conversation")
        expect(dialog).to_be_visible()
        assert in_view(page, dialog)
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_be_hidden()
        choose("Rename…")
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        choose("Rename…")
        dialog.get_by_label("Name", exact=True).fill("Walrus notes")
        dialog.get_by_role("button", name="Rename").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Walrus notes")
        expect(page).to_have_url(conversation)

        # Settings: the dialog fits the screen and scrolls inside; saving works.
        choose("Settings…")
        dialog = page.get_by_role("dialog", name="Conversation settings")
        expect(dialog).to_be_visible()
        assert in_view(page, dialog)
        dialog.get_by_label("System prompt").fill("Be brief.\n" * 30)
        save = dialog.get_by_role("button", name="Save settings")
        save.scroll_into_view_if_needed()
        assert in_view(page, save)
        save.click()
        expect(page.get_by_role("status").filter(has_text="Settings saved.")).to_be_visible()
        choose("Settings…")
        expect(dialog.get_by_label("System prompt")).to_have_value(re.compile(r"^Be brief\."))
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()

        # Both exports download.
        for name, suffix in (("Export Markdown", "md"), ("Export JSON", "json")):
            with page.expect_download() as info:
                choose(name)
            assert info.value.suggested_filename.endswith(f".{suffix}")
            assert "walruses" in Path(info.value.path()).read_text(encoding="utf-8")

        # Archive, and back.
        choose("Archive")
        expect(page.get_by_role("status").filter(has_text="Conversation archived.")).to_be_visible()
        page.goto(conversation)
        choose("Unarchive")
        expect(page.get_by_role("status").filter(has_text="back in the list")).to_be_visible()

        # Delete, after its confirmation.
        choose("Delete…")
        page.get_by_role("button", name="Delete").click()
        expect(page.get_by_role("status").filter(has_text="Conversation deleted.")).to_be_visible()
        assert page.goto(conversation).status == 404
        browser.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_on_a_desktop_the_sidebar_groups_and_scrolls_its_list(tmp_path, scheme):
    with served(tmp_path, **ENV) as app, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_context(base_url=app.url, color_scheme=scheme, **DESKTOP).new_page()
        sign_up(page, "alice")
        seed(app)
        page.goto("/")
        sidebar = page.get_by_role("navigation", name="Conversations")
        expect(sidebar).to_be_visible()
        expect(page.get_by_role("button", name="Conversations")).to_be_hidden()
        listing = page.locator("#conversation-list")
        expect(listing.get_by_role("heading")).to_have_text(
            ["Today", "Yesterday", "Previous 7 days", "Older"]
        )
        # The list scrolls on its own; the page and the account links stay put.
        assert listing.evaluate("el => el.scrollHeight > el.clientHeight")
        assert page.evaluate("document.documentElement.scrollHeight") <= 900
        sign_out = sidebar.get_by_role("button", name="Sign out")
        assert in_view(page, sign_out)
        last = sidebar.get_by_role("link", name="Topic 30")
        listing.evaluate("el => { el.scrollTop = el.scrollHeight; }")
        assert in_view(page, last)
        expect(last).to_have_attribute("title", "Topic 30")
        assert in_view(page, sign_out)
        # The account links and New chat carry icons.
        for name in ("New chat", "Usage", "Sign out"):
            control = sidebar.locator("a, button", has_text=re.compile(f"^{name}$"))
            expect(control.locator("svg.icon")).to_have_count(1)

        # A new chat's conversation goes to the top of Today, with no reload.
        send(page, "Fresh question [sim:tokens=10]")
        settled(page)
        today = page.locator("#conversation-group-today").get_by_role("link")
        expect(today.first).to_have_text("Fresh question [sim:tokens=10]")
        expect(page.locator("#model-name")).to_have_text("Claude 4.6")
        browser.close()


def test_a_new_chat_lands_under_today_when_the_list_had_no_today(tmp_path):
    older = SEED.replace("range(1, 31)", "range(20, 22)")
    with served(tmp_path, **ENV) as app, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_context(base_url=app.url, **DESKTOP).new_page()
        sign_up(page, "alice")
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", older],
            cwd=ROOT,
            env=app.env,
            check=True,
            capture_output=True,
        )
        page.goto("/")
        headings = page.locator("#conversation-list").get_by_role("heading")
        expect(headings).to_have_text(["Older"])
        send(page, "Something new [sim:tokens=10]")
        settled(page)
        expect(headings).to_have_text(["Today", "Older"])
        expect(page.locator("#conversation-group-today").get_by_role("link")).to_have_text(
            ["Something new [sim:tokens=10]"]
        )
        browser.close()


@pytest.mark.parametrize("language", ["en", "fr"])
def test_the_search_placeholder_is_never_cut_off(tmp_path, language):
    with served(tmp_path, **ENV) as app, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_context(base_url=app.url).new_page()
        sign_up(page, "alice")
        state = page.context.storage_state()
        for size in (DESKTOP, PHONE):
            page = browser.new_context(
                base_url=app.url, locale=language, storage_state=state, **size
            ).new_page()
            page.goto("/")
            expect(page.locator("html")).to_have_attribute("lang", language)
            if size is PHONE:
                page.locator(".drawer-toggle").click()
            search = page.locator("#search-input")
            expect(search).to_be_visible()
            assert search.get_attribute("placeholder")
            assert search.evaluate(PLACEHOLDER_FITS), (language, size)
        browser.close()


# A second model people may pick: the simulator does not know its slug (its replies fail
# with "model not found"), which is all this test needs of it.
PREVIEW = """
from billing.models import CatalogModel
CatalogModel.objects.create(
    slug="claude-4-6-preview", display_name="Claude 4.6 Preview", provider="anthropic",
    context_window=128000, max_output_tokens=4096,
    input_price_per_1k_micros=1000, output_price_per_1k_micros=2000,
)
"""


def test_switching_the_model_renames_it_in_the_header_without_a_reload(tmp_path):
    with served(tmp_path, **ENV) as app, sync_playwright() as playwright:
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", PREVIEW],
            cwd=ROOT,
            env=app.env,
            check=True,
            capture_output=True,
        )
        browser = launch_chromium(playwright)
        page = browser.new_context(base_url=app.url, **DESKTOP).new_page()
        sign_up(page, "alice")
        header = page.locator("#model-name")
        expect(header).to_have_text("Claude 4.6")  # the default model, by its name
        page.get_by_label("Model", exact=True).select_option(label="Claude 4.6 Preview")
        send(page, "Hello [sim:tokens=5]")
        expect(header).to_have_text("Claude 4.6 Preview")  # the new chat's model
        expect(page.locator("article.message--assistant")).to_have_attribute(
            "data-status", "failed", timeout=SETTLE
        )
        page.get_by_label("Model", exact=True).select_option(label="Claude 4.6")
        send(page, "Again [sim:tokens=5]")
        expect(header).to_have_text("Claude 4.6")  # switched, with no reload
        settled(page, 2)
        expect(page.locator("article.message--assistant .answered-by").last).to_have_text(
            "Claude 4.6"
        )
        browser.close()


def test_without_javascript_the_menu_and_its_dialogs_still_work_on_a_phone(tmp_path):
    with served(tmp_path, **ENV) as app, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_context(base_url=app.url, **PHONE).new_page()
        sign_up(page, "alice")
        send(page, "Tell me about otters [sim:tokens=10]")
        settled(page)
        expect(page).to_have_url(CONVERSATION_URL)
        conversation = page.url
        state = page.context.storage_state()
        plain = browser.new_context(
            base_url=app.url, java_script_enabled=False, storage_state=state, **PHONE
        )
        page = plain.new_page()
        page.goto(conversation)
        # The list: a link to the page of all conversations.
        page.get_by_role("link", name="Conversations").click()
        expect(page).to_have_url(re.compile(r"/conversations/$"))
        page.goto(conversation)
        # The menu opens as a disclosure; Rename… opens its dialog with the page.
        page.get_by_role("button", name="Conversation menu").click()
        menu_item(page, "Rename…").click()
        expect(page).to_have_url(re.compile(r"\?dialog=rename$"))
        dialog = page.get_by_role("dialog", name="Rename conversation")
        expect(dialog).to_be_visible()
        assert in_view(page, dialog)
        dialog.get_by_label("Name", exact=True).fill("Otter facts")
        dialog.get_by_role("button", name="Rename").click()
        expect(page).to_have_url(conversation)
        expect(page.get_by_role("heading", level=1)).to_have_text("Otter facts")
        page.get_by_role("button", name="Conversation menu").click()
        menu_item(page, "Settings…").click()
        dialog = page.get_by_role("dialog", name="Conversation settings")
        dialog.get_by_label("Temperature").fill("0.4")
        dialog.get_by_role("button", name="Save settings").click()
        expect(page.get_by_role("status").filter(has_text="Settings saved.")).to_be_visible()
        browser.close()


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_each_conversation_in_the_list_has_its_own_menu(tmp_path, size):
    with served(tmp_path, **ENV) as app, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        look = DESKTOP if size == "desktop" else PHONE
        page = browser.new_context(base_url=app.url, accept_downloads=True, **look).new_page()
        sign_up(page, "alice")
        send(page, "Tell me about seals [sim:tokens=10]")
        settled(page)
        expect(page).to_have_url(CONVERSATION_URL)
        seals = page.url
        page.goto("/")  # a new chat
        send(page, "Tell me about whales [sim:tokens=10]")
        settled(page)
        expect(page).to_have_url(CONVERSATION_URL)

        def options() -> None:
            if size == "phone":
                page.get_by_role("button", name="Conversations").click()
            item = page.locator("#conversation-list li[id]").filter(has_text="seals")
            item.hover()
            button = page.get_by_role("button", name="Options for “Tell me about seals")
            expect(button).to_be_visible()
            button.click()
            expect(item.locator(".item-menu-items")).to_be_visible()
            assert in_view(page, item.locator(".item-menu-items"))

        options()
        with page.expect_download() as info:
            page.locator(".item-menu-items").get_by_role("link", name="Export JSON").click()
        assert "seals" in Path(info.value.path()).read_text(encoding="utf-8")
        page.keyboard.press("Escape")
        if size == "phone":
            page.keyboard.press("Escape")  # and the drawer
        options()
        page.locator(".item-menu-items").get_by_role("link", name="Rename…").click()
        expect(page).to_have_url(f"{seals}?dialog=rename")
        dialog = page.get_by_role("dialog", name="Rename conversation")
        expect(dialog).to_be_visible()
        dialog.get_by_label("Name", exact=True).fill("Seal facts")
        dialog.get_by_role("button", name="Rename").click()
        expect(page).to_have_url(seals)
        expect(page.get_by_role("heading", level=1)).to_have_text("Seal facts")
        browser.close()
