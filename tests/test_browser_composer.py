"""The composer and the empty chat, as a person uses them at desktop and phone sizes: a
box that grows, Send that becomes Stop, Enter on a touch screen, an empty chat that says
what the model is, notices that go away, and a refused send that breaks no rule of the
Content Security Policy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from .browser import SIMULATED_CLAUDE, Served, launch_chromium, served
from .test_browser_chat import sign_up

pytestmark = pytest.mark.browser

SETTLE = 30_000  # ms a reply may take to settle
DESKTOP = {"viewport": {"width": 1440, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
SIZES = {"desktop": DESKTOP, "phone": PHONE}
LONG_REPLY = "Tell me everything [sim:tokens=2000] [sim:latency=30]"
BUILT_IN = (
    "A small model that runs on this computer: fast, not wise — set ANTHROPIC_API_KEY "
    "for claude-4-6."
)

# Content Security Policy violations, recorded in every page before its own scripts run.
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI + " " + (e.sample || ""));
});
"""


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    # USER_RPM=3: the fourth message a minute is refused (the CSP test needs a refusal).
    env = {**SIMULATED_CLAUDE, "SIMULATOR_LATENCY_MS": "5", "USER_RPM": "3"}
    with served(tmp_path_factory.mktemp("composer"), **env) as running:
        yield running


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


def new_page(browser: Browser, app: Served, size: str, **options: object) -> Page:
    context = browser.new_context(base_url=app.url, **SIZES[size], **options)
    context.add_init_script(WATCH_CSP)
    return context.new_page()


def box(page: Page):  # type: ignore[no-untyped-def]
    return page.get_by_role("textbox", name="Message")


def composer_button(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator("#composer").get_by_role("button", name=name, exact=True)


def settled(page: Page, number: int, status: str = "complete") -> None:
    reply = page.locator("article.message--assistant").nth(number - 1)
    expect(reply).to_have_attribute("data-status", status, timeout=SETTLE)


def height(page: Page) -> float:
    return page.locator("#message-input").evaluate("el => el.getBoundingClientRect().height")


TEN_LINES = """el => {
  const css = getComputedStyle(el);
  return 10 * parseFloat(css.lineHeight) + parseFloat(css.paddingTop)
    + parseFloat(css.paddingBottom) + parseFloat(css.borderTopWidth)
    + parseFloat(css.borderBottomWidth);
}"""


@pytest.mark.parametrize("size", SIZES)
def test_the_box_grows_to_ten_lines_then_scrolls_and_shrinks_after_sending(
    browser: Browser, app: Served, size: str
):
    page = new_page(browser, app, size)
    sign_up(page, f"grow-{size}")
    box(page).fill("one line")
    one_line = height(page)
    box(page).fill("\n".join(f"line {n}" for n in range(1, 13)))
    twelve_lines = height(page)
    ten_lines = page.locator("#message-input").evaluate(TEN_LINES)
    assert twelve_lines > one_line * 3, (one_line, twelve_lines)
    assert twelve_lines <= ten_lines + 1, (twelve_lines, ten_lines)
    # Past ten lines the text scrolls inside the box.
    assert page.locator("#message-input").evaluate("el => el.scrollHeight > el.clientHeight")
    box(page).fill("\n".join(f"line {n}" for n in range(1, 6)) + " [sim:tokens=3]")
    assert one_line < height(page) < twelve_lines
    composer_button(page, "Send").click()
    settled(page, 1)
    expect(box(page)).to_have_value("")
    assert height(page) == one_line
    page.context.close()


@pytest.mark.parametrize("size", SIZES)
def test_send_becomes_stop_while_a_reply_streams_and_stop_keeps_the_focus(
    browser: Browser, app: Served, size: str
):
    page = new_page(browser, app, size)
    sign_up(page, f"stop-{size}")
    expect(composer_button(page, "Stop")).to_be_hidden()
    box(page).fill(LONG_REPLY)
    composer_button(page, "Send").click()
    stop = composer_button(page, "Stop")
    expect(stop).to_be_visible()
    expect(composer_button(page, "Send")).to_be_hidden()
    box(page).focus()
    box(page).type("next question")
    stop.click()
    settled(page, 1, "stopped")
    expect(box(page)).to_be_focused()
    expect(box(page)).to_have_value("next question")
    expect(composer_button(page, "Send")).to_be_visible()
    expect(stop).to_be_hidden()

    # A reply that ends by itself gives Send back too; Escape still stops.
    box(page).fill("A short one [sim:tokens=20] [sim:latency=30]")
    composer_button(page, "Send").click()
    expect(composer_button(page, "Stop")).to_be_visible()
    settled(page, 2)
    expect(composer_button(page, "Send")).to_be_visible()
    expect(composer_button(page, "Stop")).to_be_hidden()
    page.context.close()


def test_escape_stops_and_leaves_the_focus_in_the_box(browser: Browser, app: Served):
    page = new_page(browser, app, "desktop")
    sign_up(page, "escape")
    box(page).fill(LONG_REPLY)
    box(page).press("Enter")
    expect(composer_button(page, "Stop")).to_be_visible()
    box(page).type("draft")
    # Enter does not send while the reply is written: the draft stays in the box.
    box(page).press("Enter")
    expect(box(page)).to_have_value("draft")
    expect(page.locator("article.message--user")).to_have_count(1)
    page.keyboard.press("Escape")
    settled(page, 1, "stopped")
    # Nothing was sent: the socket answers in order, so a refusal would be here by now.
    expect(page.locator("#chat-error")).to_be_empty()
    expect(page.locator("article.message--user")).to_have_count(1)
    expect(box(page)).to_be_focused()
    expect(box(page)).to_have_value("draft")
    expect(composer_button(page, "Send")).to_be_visible()
    page.context.close()


def test_on_a_touch_screen_enter_makes_a_new_line_and_no_keyboard_hint_shows(
    browser: Browser, app: Served
):
    page = new_page(browser, app, "phone")
    sign_up(page, "touch")
    expect(page.locator(".keyboard-hint")).to_be_hidden()
    box(page).fill("Hello [sim:tokens=3]")
    expect(page.locator("#cost-estimate")).to_be_visible()
    box(page).press("End")
    box(page).press("Enter")
    box(page).type("second line")
    expect(box(page)).to_have_value("Hello [sim:tokens=3]\nsecond line")
    expect(page.locator("article.message")).to_have_count(0)
    composer_button(page, "Send").tap()
    expect(page.locator("article.message--user .message-body")).to_have_text(
        "Hello [sim:tokens=3]\nsecond line"
    )
    settled(page, 1)
    page.context.close()

    # With a mouse and a keyboard, the hint is there and Enter sends.
    page = new_page(browser, app, "desktop")
    sign_up(page, "keyboard")
    expect(page.locator(".keyboard-hint")).to_be_visible()
    box(page).fill("Hello [sim:tokens=3]")
    box(page).press("Enter")
    settled(page, 1)
    page.context.close()


@pytest.mark.parametrize("size", SIZES)
def test_the_empty_chat_says_what_the_model_is_and_offers_prompts(
    browser: Browser, app: Served, size: str
):
    page = new_page(browser, app, size)
    sign_up(page, f"empty-{size}")
    empty = page.locator("#empty-chat")
    expect(empty.get_by_role("heading", name="Claude 4.6")).to_be_visible()
    expect(empty).to_contain_text("A state-of-the-art text model for high-performance")
    expect(empty.get_by_text(BUILT_IN, exact=True)).to_be_hidden()
    # Another model picked before the first message: the empty chat follows it.
    page.get_by_label("Model").select_option("smollm2-135m")
    expect(empty.get_by_role("heading", name="SmolLM2 135M (local)")).to_be_visible()
    expect(empty.get_by_text(BUILT_IN, exact=True)).to_be_visible()
    expect(empty.get_by_role("heading", name="Claude 4.6")).to_be_hidden()
    page.get_by_label("Model").select_option("claude-4-6")
    expect(empty.get_by_role("heading", name="Claude 4.6")).to_be_visible()

    prompts = empty.get_by_role("group", name="Suggested prompts").get_by_role("button")
    expect(prompts).to_have_count(3)
    first = prompts.first.inner_text()
    prompts.first.click()
    expect(box(page)).to_have_value(first)
    expect(box(page)).to_be_focused()
    box(page).press("End")
    box(page).type(" [sim:tokens=3]")
    composer_button(page, "Send").click()
    settled(page, 1)
    expect(page.locator("article.message--user .message-body")).to_have_text(
        f"{first} [sim:tokens=3]"
    )
    expect(empty).to_be_hidden()
    page.context.close()


def test_the_built_in_model_is_described_as_it_is(tmp_path):
    with served(tmp_path) as app, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = new_page(browser, app, "desktop")
        sign_up(page, "newcomer")
        empty = page.locator("#empty-chat")
        expect(empty.get_by_role("heading", name="SmolLM2 135M (local)")).to_be_visible()
        expect(empty.get_by_text(BUILT_IN, exact=True)).to_be_visible()
        browser.close()


def save_settings(page: Page) -> None:
    """Save the open conversation's settings as its menu's form does, without the menu."""
    token = page.evaluate(
        "() => JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken']"
    )
    response = page.request.post(
        page.url + "settings/",
        form={"system_prompt": "Be brief.", "temperature": "", "max_output_tokens": ""},
        headers={"X-CSRFToken": token, "Referer": page.url},
        max_redirects=0,
    )
    assert response.status == 302, response.status
    page.goto(page.url)


@pytest.mark.parametrize("size", SIZES)
def test_settings_saved_goes_away_by_itself_or_when_dismissed_and_moves_nothing(
    browser: Browser, app: Served, size: str
):
    page = new_page(browser, app, size)
    sign_up(page, f"flash-{size}")
    box(page).fill("Hello [sim:tokens=3]")
    composer_button(page, "Send").click()
    settled(page, 1)
    save_settings(page)
    notice = page.get_by_role("status").filter(has_text="Settings saved.")
    expect(notice).to_be_visible()
    where = page.locator("#messages").bounding_box(), page.locator("#composer").bounding_box()
    expect(notice).to_have_count(0, timeout=15_000)
    assert (
        page.locator("#messages").bounding_box(),
        page.locator("#composer").bounding_box(),
    ) == where

    save_settings(page)
    notice = page.get_by_role("status").filter(has_text="Settings saved.")
    notice.get_by_role("button", name="Dismiss").click()
    expect(notice).to_have_count(0)
    assert page.evaluate("() => window.__csp") == []
    page.context.close()


def test_a_refused_send_raises_no_policy_violation_or_console_error(browser: Browser, app: Served):
    page = new_page(browser, app, "desktop")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    sign_up(page, "refused")
    # USER_RPM=3: three messages go, the fourth is refused and comes back to the box.
    for number in range(1, 4):
        box(page).fill(f"Message {number} [sim:tokens=3]")
        box(page).press("Enter")
        settled(page, number)
    # The box carries a style attribute, as a box resized by its handle or touched by a
    # browser extension does (set through DevTools, as the browser itself would: the page's
    # own scripts may not). The box the server puts back must not copy it.
    cdp = page.context.new_cdp_session(page)
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": "#message-input"})
    cdp.send(
        "DOM.setAttributeValue",
        {"nodeId": node["nodeId"], "name": "style", "value": "height: 120px"},
    )
    expect(box(page)).to_have_attribute("style", "height: 120px")
    # Setting it is itself reported under the policy: only what follows counts.
    page.wait_for_timeout(300)
    page.evaluate("() => { window.__csp = []; }")
    errors.clear()
    box(page).fill("One too many\non three\nlines")
    box(page).press("Enter")
    expect(page.locator("#chat-error")).not_to_be_empty()
    expect(box(page)).to_have_value("One too many\non three\nlines")
    # The box put back is sized to its text, and without the old box's style.
    expect(box(page)).to_have_attribute("rows", "3")
    expect(box(page)).not_to_have_attribute("style", "height: 120px")
    page.wait_for_timeout(500)  # a late violation report still arrives
    assert page.evaluate("() => window.__csp") == []
    assert errors == []
    page.context.close()
