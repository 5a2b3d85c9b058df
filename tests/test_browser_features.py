"""The chat app's features as a person uses them in a real browser: managing conversations,
regenerating and editing, settings, copying, the keyboard, a long conversation, text in
any script, phones and dark mode, and the pages without JavaScript."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect, sync_playwright

from llm.simulator.replies import reply_text

from .browser import ROOT, SIMULATED_CLAUDE, launch_chromium, served, served_app
from .test_browser_chat import sign_up

pytestmark = pytest.mark.browser

ENV = {**SIMULATED_CLAUDE, "SIMULATOR_LATENCY_MS": "5"}
CONVERSATION_URL = re.compile(r"/c/[0-9a-f-]{36}/$")
SETTLE = 20_000  # ms a reply may take to settle


def send(page: Page, text: str) -> None:
    page.get_by_role("textbox", name="Message").fill(text)
    page.get_by_role("button", name="Send").click()


def reply(page: Page, number: int, status: str = "complete") -> Locator:
    """The number-th reply on the page (from 1), once it has settled with `status`."""
    found = page.locator("article.message--assistant").nth(number - 1)
    expect(found).to_have_attribute("data-status", status, timeout=SETTLE)
    return found


def open_menu(page: Page, item: str = "Settings…") -> None:
    """Choose `item` in the Conversation menu (the ⋯ button); Settings… opens its dialog."""
    page.get_by_role("button", name="Conversation menu").click()
    exact = re.compile(f"^{re.escape(item)}$")
    page.locator(".menu-items").locator("a, button", has_text=exact).click()
    if item == "Settings…":
        expect(page.get_by_role("button", name="Save settings")).to_be_visible()


def flash(page: Page, text: str) -> Locator:
    return page.get_by_role("status").filter(has_text=text)


def streamed_past(page: Page, chars: int) -> None:
    page.wait_for_function(
        "n => { const b = document.querySelector('.stream-text');"
        " return b && b.textContent.length > n; }",
        arg=chars,
        timeout=SETTLE,
    )


def code_of(text: str) -> str:
    """The fenced code block of a simulator reply."""
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match, text
    return match.group(1).strip()


def test_manage_conversations_and_their_settings(tmp_path):
    with served_app(tmp_path, **ENV) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_context(base_url=url).new_page()
        sign_up(page, "alice")
        sidebar = page.locator("#conversation-list").get_by_role("link")
        results = page.locator("#all-conversations").get_by_role("link")

        # Two messages in each of two chats.
        send(page, "Tell me about penguins")
        reply(page, 1)
        expect(page).to_have_url(CONVERSATION_URL)
        penguins = page.url
        send(page, "And what do they eat?")
        reply(page, 2)
        page.get_by_role("link", name="New chat").click()
        expect(page.locator("article.message")).to_have_count(0)
        send(page, "Tell me about walruses")
        reply(page, 1)
        expect(page).to_have_url(CONVERSATION_URL)
        walruses = page.url
        assert walruses != penguins
        # The menu of a chat that its first message opened works at once, no reload.
        open_menu(page)
        page.get_by_label("System prompt").fill("Be brief.")
        page.get_by_role("button", name="Save settings").click()
        expect(flash(page, "Settings saved.")).to_be_visible()
        expect(page).to_have_url(walruses)
        send(page, "Where do walruses live?")
        reply(page, 2)
        expect(sidebar).to_have_text(["Tell me about walruses", "Tell me about penguins"])

        # Rename through the menu.
        page.goto(penguins)
        open_menu(page, "Rename…")
        page.get_by_label("Name", exact=True).fill("Penguin notes")
        page.get_by_role("button", name="Rename").click()
        expect(page).to_have_url(penguins)
        expect(page.get_by_role("heading", level=1)).to_have_text("Penguin notes")
        expect(page).to_have_title("Penguin notes · Chat")
        expect(sidebar).to_have_text(["Tell me about walruses", "Penguin notes"])

        # Search from the sidebar: text only a reply holds, then text of a user message
        # (any case) from the list page's own search box.
        search = page.get_by_role("searchbox", name="Search conversations")
        search.fill("asked: “Tell me about penguins")
        search.press("Enter")
        expect(page).to_have_url(re.compile(r"/conversations/\?q="))
        expect(page.get_by_role("heading", level=1)).to_contain_text("Tell me about penguins")
        expect(results).to_have_text(["Penguin notes"])
        search = page.get_by_role("searchbox", name="Search conversations")
        expect(search).to_have_value("asked: “Tell me about penguins")
        search.fill("where do WALRUSES live")
        search.press("Enter")
        expect(results).to_have_text(["Tell me about walruses"])
        search = page.get_by_role("searchbox", name="Search conversations")
        search.fill("no such words anywhere")
        search.press("Enter")
        expect(results).to_have_count(0)
        expect(page.locator("#all-conversations")).to_contain_text("Nothing matches.")

        # Settings: saved, and still there after a reload.
        page.goto(penguins)
        open_menu(page)
        page.get_by_label("System prompt").fill("Answer like a pirate.")
        page.get_by_label("Temperature").fill("0.3")
        page.get_by_role("button", name="Save settings").click()
        expect(flash(page, "Settings saved.")).to_be_visible()
        page.reload()
        open_menu(page)
        expect(page.get_by_label("System prompt")).to_have_value("Answer like a pirate.")
        expect(page.get_by_label("Temperature")).to_have_value("0.3")
        expect(page.get_by_label("Max output tokens")).to_have_value("")
        # Too many output tokens: the form says so, open, and nothing is saved.
        page.get_by_label("Max output tokens").fill("99999")
        page.get_by_role("button", name="Save settings").click()
        settings = page.locator("form.settings-form")
        expect(settings).to_be_visible()
        expect(settings).to_contain_text(re.compile(r"Max output tokens goes from 1 to [\d,]+"))
        expect(page.get_by_label("Max output tokens")).to_have_value("99999")
        page.goto(penguins)
        open_menu(page)
        expect(page.get_by_label("Max output tokens")).to_have_value("")
        expect(page.get_by_label("System prompt")).to_have_value("Answer like a pirate.")

        # Archive: out of the sidebar, in the archived list; and back.
        page.goto(walruses)
        open_menu(page, "Archive")
        expect(flash(page, "Conversation archived.")).to_be_visible()
        expect(sidebar).to_have_text(["Penguin notes"])
        page.get_by_role("link", name="Archived", exact=True).click()
        expect(page).to_have_url(re.compile(r"/conversations/\?archived=1$"))
        expect(results).to_have_text(["Tell me about walruses"])
        results.first.click()
        expect(page).to_have_url(walruses)
        expect(page.locator("article.message")).to_have_count(4)
        open_menu(page, "Unarchive")
        expect(page).to_have_url(walruses)
        expect(flash(page, "Conversation back in the list.")).to_be_visible()
        expect(sidebar).to_have_text(["Tell me about walruses", "Penguin notes"])
        page.goto("/conversations/?archived=1")
        expect(results).to_have_count(0)
        expect(page.locator("#all-conversations")).to_contain_text("No archived conversations.")

        # Delete asks first: Cancel keeps the conversation, Delete removes it.
        page.goto(walruses)
        open_menu(page, "Delete…")
        expect(page.get_by_role("heading", name="Delete this conversation?")).to_be_visible()
        expect(page.get_by_text("“Tell me about walruses”")).to_be_visible()
        page.get_by_role("link", name="Cancel").click()
        expect(page).to_have_url(walruses)
        expect(page.locator("article.message")).to_have_count(4)
        expect(sidebar).to_have_text(["Tell me about walruses", "Penguin notes"])
        open_menu(page, "Delete…")
        page.get_by_role("button", name="Delete").click()
        expect(page).to_have_url(f"{url}/")
        expect(flash(page, "Conversation deleted.")).to_be_visible()
        expect(sidebar).to_have_text(["Penguin notes"])
        assert page.goto(walruses).status == 404
        page.goto("/conversations/")
        expect(results).to_have_text(["Penguin notes"])
        browser.close()


def test_regenerate_edit_and_copy(tmp_path):
    first, second, edited = "What is a closure?", "And a generator?", "What is a decorator?"
    with served_app(tmp_path, **ENV) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(base_url=url)
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
        page = context.new_page()
        sign_up(page, "alice")
        articles = page.locator("article.message")
        replies = page.locator("article.message--assistant")
        send(page, first)
        reply(page, 1)
        send(page, second)
        old = reply(page, 2)
        old_id = old.get_attribute("id")

        # Regenerate the last reply: the old one goes, one new complete reply takes its place.
        old.get_by_role("button", name="Regenerate").click()
        expect(page.locator(f"#{old_id}")).to_have_count(0, timeout=SETTLE)
        new = reply(page, 2)
        new_id = new.get_attribute("id")
        assert new_id != old_id
        expect(replies).to_have_count(2)
        expect(articles).to_have_count(4)
        expect(new.locator(".markdown")).to_contain_text(f"You asked: “{second}”")
        expect(new.get_by_role("button", name="Regenerate")).to_be_visible()
        page.reload()
        expect(articles).to_have_count(4)
        expect(replies.nth(1)).to_have_attribute("id", new_id)

        # Edit the first message: everything after it goes; the new message and its reply
        # come in its place.
        before = [a.get_attribute("id") for a in articles.all()]
        mine = page.locator("article.message--user").first
        mine.get_by_text("Edit", exact=True).click()
        box = mine.get_by_label("Edit your message")
        expect(box).to_have_value(first)
        box.fill(edited)
        mine.get_by_role("button", name="Save and send").click()
        expect(articles).to_have_count(2, timeout=SETTLE)
        for gone in before:
            expect(page.locator(f"#{gone}")).to_have_count(0)
        expect(page.locator("article.message--user .message-body")).to_have_text(edited)
        answer = reply(page, 1)
        expect(answer.locator(".markdown")).to_contain_text(f"You asked: “{edited}”")
        page.reload()
        expect(page.locator("article.message--user .message-body")).to_have_text(edited)
        expect(replies).to_have_count(1)

        # Copy a code block, then the whole reply.
        expected = reply_text(edited)
        answer = reply(page, 1)
        answer.get_by_role("button", name="Copy code").click()
        expect(answer.locator(".copy-code")).to_have_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()").strip() == code_of(expected)
        page.evaluate("navigator.clipboard.writeText('')")
        copy = answer.get_by_role("button", name="Copy", exact=True)
        copy.click()
        # The code block's button may still say "Copied" from the click above: look at the
        # reply's own button.
        expect(answer.locator(".copy-reply")).to_have_text("Copied")
        copied = page.evaluate("navigator.clipboard.readText()")
        heading = expected.split("\n")[0].removeprefix("## ")
        assert copied.startswith(heading), copied[:200]
        assert f"You asked: “{edited}”" in copied
        assert code_of(expected) in copied
        assert expected.rstrip().split("\n")[-1] in copied  # the last sentence
        # What is copied is the reply, not the page's buttons.
        assert "Copy code" not in copied and "Copied" not in copied, copied
        browser.close()


def test_keyboard_stop_new_chat_and_announcer(tmp_path):
    with served_app(tmp_path, **ENV) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_context(base_url=url).new_page()
        sign_up(page, "alice")
        announcer = page.locator("#announcer")
        expect(announcer).to_have_attribute("aria-live", "polite")

        # Escape stops a long, slow reply while it streams.
        long_prompt = "Tell me everything [sim:tokens=2000] [sim:latency=20]"
        send(page, long_prompt)
        streamed_past(page, 40)
        streaming = page.locator("article.message--assistant")
        assert streaming.get_attribute("data-status") in {"pending", "streaming"}
        assert announcer.text_content() == ""
        page.keyboard.press("Escape")
        stopped = reply(page, 1, "stopped")
        expect(stopped).to_contain_text("You stopped this reply.")
        expect(stopped.get_by_role("button", name="Stop")).to_have_count(0)
        shown = stopped.locator(".markdown").inner_text()
        assert 0 < len(shown) < len(reply_text(long_prompt, tokens=2000)) // 2

        # Ctrl+Shift+O: a new chat.
        page.keyboard.press("Control+Shift+O")
        expect(page).to_have_url(f"{url}/")
        expect(page.get_by_role("heading", level=1)).to_have_text("New chat")
        expect(page.locator("article.message")).to_have_count(0)
        expect(page.get_by_role("textbox", name="Message")).to_be_focused()

        # The announcer stays quiet while a reply streams, then reads the settled reply.
        prompt = "A short answer, please [sim:tokens=60] [sim:latency=30]"
        send(page, prompt)
        streamed_past(page, 20)
        assert announcer.text_content() == ""
        reply(page, 1)
        expected = reply_text(prompt, tokens=60)
        assert len(expected) < 600
        expect(announcer).to_contain_text(expected)
        browser.close()


# Run in `manage.py shell` against the served app's database: alice's conversation of
# 1,000 messages (500 questions and their replies), its id printed.
SEED_THOUSAND = """
from django.contrib.auth import get_user_model
from conversations.models import Conversation, Message
from conversations.rendering import render_markdown
from llm.simulator.replies import reply_text

alice = get_user_model().objects.get(username="alice")
chat = Conversation.objects.create(owner=alice, model="claude-4-6", title="A long one")
rows = []
for i in range(500):
    question = f"Question number {i}"
    answer = reply_text(question)
    rows.append(Message(conversation=chat, role="user", content=question))
    rows.append(Message(
        conversation=chat, role="assistant", content=answer,
        content_html=render_markdown(answer), model="claude-4-6", model_name="Claude 4.6",
        input_tokens=10, output_tokens=80,
    ))
Message.objects.bulk_create(rows)
for question, answer in zip(rows[::2], rows[1::2]):
    answer.reply_to = question
Message.objects.bulk_update(rows[1::2], ["reply_to"])
print(chat.pk)
"""

# Where an element sits in the messages list, from the list's top edge.
OFFSET_IN_LIST = """id => {
  const list = document.getElementById("messages");
  return document.getElementById(id).getBoundingClientRect().top
    - list.getBoundingClientRect().top;
}"""


def test_a_thousand_message_conversation_opens_small_and_loads_on_scroll(tmp_path):
    with served(tmp_path, **ENV) as app, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_context(base_url=app.url).new_page()
        sign_up(page, "alice")
        seeded = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", SEED_THOUSAND],
            cwd=ROOT,
            env=app.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert seeded.returncode == 0, seeded.stderr
        chat = seeded.stdout.strip().splitlines()[-1]

        response = page.goto(f"/c/{chat}/")
        assert response is not None and response.ok
        size = len(response.body())
        assert size < 300_000, f"the page is {size:,} bytes"
        articles = page.locator("article.message")
        expect(articles).to_have_count(50)
        expect(articles.last).to_contain_text("You asked: “Question number 499”")
        expect(articles.first).to_contain_text("Question number 475")
        expect(page.get_by_role("link", name="Earlier messages")).to_be_attached()
        listing = page.locator("#messages")
        # It opens at the newest message, in full view.
        assert listing.evaluate(
            "el => el.lastElementChild.getBoundingClientRect().bottom"
            " <= el.getBoundingClientRect().bottom"
        )

        # Scrolled to the top, the earlier messages load above, and what was at the top of
        # the view stays there.
        top = articles.first.get_attribute("id")
        before = listing.evaluate(
            "(el, id) => { el.scrollTop = 0; return (" + OFFSET_IN_LIST + ")(id); }",
            top,
        )
        expect(articles).to_have_count(100)
        expect(articles.first).to_contain_text("Question number 450")
        page.wait_for_timeout(300)  # let the scroll position settle
        after = page.evaluate(OFFSET_IN_LIST, top)
        assert abs(after - before) < 150, f"the view jumped from {before} to {after}"
        expect(articles).to_have_count(100)  # no runaway loading

        # Scrolling up again and again reaches the first message, each exactly once.
        for count in range(150, 1001, 50):
            listing.evaluate("el => { el.scrollTop = 0; }")
            expect(articles).to_have_count(count)
        expect(page.get_by_role("link", name="Earlier messages")).to_have_count(0)
        expect(articles.first.locator(".message-body")).to_have_text("Question number 0")
        ids = page.eval_on_selector_all("article.message", "els => els.map(e => e.id)")
        assert len(set(ids)) == 1000
        assert ids == sorted(ids, key=lambda i: int(i[2:]))
        browser.close()


UTF8 = "مرحبا بالعالم — 你好，世界 — こんにちは 👋🏽 👩‍💻 🎉"


def test_utf8_text_and_the_pages_without_javascript(tmp_path):
    with served_app(tmp_path, **ENV) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(base_url=url)
        page = context.new_page()
        sign_up(page, "alice")
        send(page, UTF8)
        answer = reply(page, 1)
        expect(page).to_have_url(CONVERSATION_URL)
        conversation = page.url
        for shown in (page, None):
            if shown is None:
                page.reload()
                answer = reply(page, 1)
            mine = page.locator("article.message--user .message-body")
            assert mine.text_content() == UTF8
            expect(mine).to_have_attribute("dir", "auto")
            expect(answer.locator(".markdown")).to_have_attribute("dir", "auto")
            expect(answer.locator(".markdown")).to_contain_text(f"You asked: “{UTF8}”")
            expect(page.locator("#conversation-list").get_by_role("link")).to_have_text([UTF8])
            expect(page.get_by_role("heading", level=1)).to_have_text(UTF8)
            expect(page).to_have_title(f"{UTF8} · Chat")
        assert mine.evaluate("el => getComputedStyle(el).direction") == "rtl"
        expected = reply_text(UTF8)

        # The same pages without JavaScript, signed in with the same session.
        state = context.storage_state()
        plain = browser.new_context(base_url=url, java_script_enabled=False, storage_state=state)
        page = plain.new_page()
        page.goto(conversation)
        expect(page.locator("article.message")).to_have_count(2)
        expect(page.locator("article.message--user .message-body")).to_have_text(UTF8)
        shown = page.locator("article.message--assistant .markdown")
        expect(shown).to_contain_text(f"You asked: “{UTF8}”")
        expect(shown).to_contain_text(expected.rstrip().split("\n")[-1])
        expect(shown.locator("pre code")).to_have_text(code_of(expected) + "\n")

        page.goto("/conversations/")
        expect(page.locator("#all-conversations").get_by_role("link")).to_have_text([UTF8])
        search = page.get_by_role("searchbox", name="Search conversations")
        search.fill("こんにちは")
        search.press("Enter")
        expect(page.locator("#all-conversations").get_by_role("link")).to_have_text([UTF8])
        page.locator("#all-conversations").get_by_role("link").click()
        expect(page).to_have_url(conversation)

        page.get_by_role("button", name="Conversation menu").click()
        with page.expect_download() as info:
            page.get_by_role("link", name="Export Markdown").click()
        download = info.value
        assert download.suggested_filename.endswith(".md")
        assert "こんにちは" in download.suggested_filename
        text = Path(download.path()).read_text(encoding="utf-8")
        assert text.startswith(f"# {UTF8}\n")
        assert f"## You\n\n{UTF8}\n" in text
        assert reply_text(UTF8) in text
        plain.close()
        browser.close()


LIGHT_DARK = ("light", "dark")
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
# Whether an element is wholly inside what the screen shows (not cut off at any edge).
IN_VIEW = """el => { const r = el.getBoundingClientRect();
  return r.width > 0 && r.left >= 0 && r.top >= 0
    && r.right <= visualViewport.width && r.bottom <= visualViewport.height; }"""


def test_phone_width_and_dark_mode(tmp_path):
    shots = os.environ.get("SCREENSHOTS_DIR")
    with served_app(tmp_path, **ENV) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(base_url=url)
        page = context.new_page()
        sign_up(page, "alice")
        send(page, "Show me how to add up the lengths of some strings in Python")
        reply(page, 1)
        expect(page).to_have_url(CONVERSATION_URL)
        conversation = page.url
        state = context.storage_state()
        context.close()

        # Every look is checked and photographed before any problem fails the test.
        problems: list[str] = []
        backgrounds: dict[tuple[str, str], str] = {}
        for scheme in LIGHT_DARK:
            for device, viewport in VIEWPORTS.items():
                phone = device == "phone"
                context = browser.new_context(
                    base_url=url,
                    storage_state=state,
                    color_scheme=scheme,
                    viewport=viewport,
                    is_mobile=phone,
                    has_touch=phone,
                )
                page = context.new_page()
                page.goto(conversation)
                answer = reply(page, 1)
                expect(answer.get_by_role("button", name="Copy code")).to_be_visible()
                backgrounds[scheme, device] = page.evaluate(
                    "getComputedStyle(document.body).backgroundColor"
                )
                if shots:
                    Path(shots).mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(Path(shots) / f"chat-{scheme}-{device}.png"))
                if phone:
                    width = page.evaluate("document.documentElement.scrollWidth")
                    if width > 390:
                        problems.append(f"{scheme} phone: the chat is {width}px wide")
                    for name in ("Message", "Send"):
                        role = "textbox" if name == "Message" else "button"
                        control = page.get_by_role(role, name=name, exact=True)
                        if not control.evaluate(IN_VIEW):
                            problems.append(f"{scheme} phone: {name} is not wholly in view")
                    page.goto("/conversations/")
                    width = page.evaluate("document.documentElement.scrollWidth")
                    if width > 390:
                        problems.append(f"{scheme} phone: the list is {width}px wide")
                context.close()
        for device in VIEWPORTS:
            assert backgrounds["light", device] != backgrounds["dark", device], backgrounds
        assert not problems, problems
        browser.close()
