"""Take the README's screenshots: the app served with the claude-4-6 simulator, in Chromium.

    uv run python docs/screenshots/make.py

It serves the app on a fresh SQLite file in a temporary folder (`manage.py serve`, as the
README starts it, with the simulator), signs up, adds a few conversations of earlier days
so the list has its date groups, and writes into this folder, for each look (desktop-light
and desktop-dark at 1440×900, phone at 390×844):

    <look>-empty.png      a new, empty chat
    <look>-streaming.png  a reply being written
    <look>-menu.png       the Conversation menu open
    <look>-list.png       the conversation list (the drawer, on the phone)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, expect, sync_playwright

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

from tests.browser import CHROMIUM, CHROMIUM_ARGS, SIMULATED_CLAUDE, served  # noqa: E402

LOOKS = {
    "desktop-light": {"viewport": {"width": 1440, "height": 900}, "color_scheme": "light"},
    "desktop-dark": {"viewport": {"width": 1440, "height": 900}, "color_scheme": "dark"},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "color_scheme": "light",
        "is_mobile": True,
        "has_touch": True,
        "device_scale_factor": 2,
    },
}
USER, PASSWORD = "ada", "a-long-passphrase-42"
# A question per look, so each look's conversation has its own title in the list.
QUESTIONS = {
    "desktop-light": "How do I add up the lengths of some strings in Python?",
    "desktop-dark": "Show me a Python function that counts words in a file",
    "phone": "What is the quickest way to sort a list of tuples in Python?",
}
# Conversations of earlier days, so the list shows its groups: (title, days ago).
EARLIER = [
    ("Plan a three-day trip to Lisbon", 1),
    ("Explain Rust lifetimes with an example", 1),
    ("Draft a polite reminder about an unpaid invoice", 3),
    ("SQL: find duplicate rows by email", 4),
    ("Compare PostgreSQL full-text search and Elasticsearch", 6),
    ("Summarise the model card of claude-4-6", 12),
    ("Birthday poem for my grandmother", 25),
    ("What is a monad, in plain words?", 40),
]
SEED = f"""
import datetime
from django.contrib.auth import get_user_model
from django.utils import timezone
from conversations.models import Conversation, Message
user = get_user_model().objects.get(username={USER!r})
for title, days in {EARLIER!r}:
    c = Conversation.objects.create(owner=user, model="claude-4-6", title=title)
    Message.objects.create(conversation=c, role="user", content=title)
    when = timezone.now() - datetime.timedelta(days=days, hours=1)
    Conversation.objects.filter(pk=c.pk).update(updated_at=when)
"""


@contextmanager
def serve(folder: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`manage.py serve` with the simulator, on a SQLite file in `folder` (as the browser
    tests serve it), slow enough to catch a reply half-written."""
    with served(folder, **SIMULATED_CLAUDE, SIMULATOR_LATENCY_MS="60") as app:
        yield app.url, app.env


def sign_up(page: Page) -> None:
    page.goto("/accounts/signup/")
    page.get_by_label("Username").fill(USER)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("textbox", name="Message")).to_be_visible()


def shoot(page: Page, look: str, what: str) -> None:
    path = HERE / f"{look}-{what}.png"
    page.screenshot(path=str(path))
    print(path.relative_to(ROOT))


def take(browser: Browser, url: str, state: dict, look: str) -> None:  # type: ignore[type-arg]
    context = browser.new_context(base_url=url, storage_state=state, **LOOKS[look])
    page = context.new_page()
    phone = look == "phone"

    page.goto("/")
    expect(page.locator("#message-input")).to_be_visible()
    page.mouse.move(0, 0)
    shoot(page, look, "empty")

    # A reply caught half-written (long enough to show its form while it streams).
    page.get_by_role("textbox", name="Message").fill(QUESTIONS[look])
    page.get_by_role("button", name="Send").click()
    page.wait_for_function(
        "() => { const t = document.querySelector('.stream-text');"
        " return t && t.textContent.length > 260; }",
        timeout=60_000,
    )
    shoot(page, look, "streaming")
    reply = page.locator("article.message--assistant").last
    expect(reply).to_have_attribute("data-status", "complete", timeout=120_000)

    # The Conversation menu, on the conversation's own page.
    page.reload()
    page.get_by_role("button", name="Conversation menu").click()
    expect(page.locator(".menu-items")).to_be_visible()
    shoot(page, look, "menu")
    page.keyboard.press("Escape")
    page.evaluate("document.activeElement.blur()")  # no focus ring on the ⋯ in the picture

    # The list: the sidebar on a desktop, the drawer on a phone.
    if phone:
        page.get_by_role("button", name="Conversations").click()
        expect(page.get_by_role("navigation", name="Conversations")).to_be_visible()
        page.wait_for_timeout(400)  # the drawer's slide
    shoot(page, look, "list")
    context.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        with serve(Path(folder)) as (url, env):
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(base_url=url).new_page()
            sign_up(page)
            subprocess.run(
                [sys.executable, "manage.py", "shell", "-c", SEED],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
            )
            state = page.context.storage_state()
            page.context.close()
            for look in LOOKS:
                take(browser, url, state, look)
            browser.close()


if __name__ == "__main__":
    main()
