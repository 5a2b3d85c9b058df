"""Model output and user input are data, never code, in a real browser (trust test 4).

The simulator's `[sim:html]` reply carries an XSS corpus (llm/simulator/replies.py), and the
same corpus is sent as a user's message. It goes through every way text reaches a page:
the stream, the final render, a reload (mid-stream and after), the conversation list and
its search, and export. Every payload, if it ran, would call alert() or set `window.__xss`;
every outside address is on evil.example. Pass: no dialog, `window.__xss` unset, no
request to any host but the app's, no `on*`/`hx-*` attribute or script URL in message
bodies, model output inside an `hx-disable` container, exports downloaded as files, and not
one Content Security Policy violation (the sanitiser leaves the policy nothing to refuse).
Then the policy itself: ordinary pages of every kind raise no violation and no console
error, and what the sanitiser would have let through (an outside image, inline script,
eval) the policy blocks.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect, sync_playwright

from llm.simulator.replies import XSS_CORPUS

from .browser import ROOT, SIMULATED_CLAUDE, Served, launch_chromium, served
from .test_browser_chat import sign_up

pytestmark = pytest.mark.browser

SETTLE = 60_000  # ms a reply may take to settle

# Installed in every page before its own scripts: records Content Security Policy
# violations, and watches every change to the DOM (the stream's batches included) for
# anything inside a message body that could run or call out.
WATCH = """
(() => {
  window.__csp = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    window.__csp.push(e.violatedDirective + " " + e.blockedURI + " " + (e.sample || ""));
  });
  window.__bad = [];
  window.__batches = 0;
  window.__streamedCorpus = false;
  const CHECK = %s;
  function look(node) {
    if (!(node instanceof Element)) return;
    const found = CHECK(node);
    if (found.length) window.__bad.push(...found);
  }
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      if (m.type === "attributes") look(m.target);
      // Each batch applied moves its reply's number on (static/chat.js).
      if (m.attributeName === "data-seq" && m.target.matches(".stream-text")) window.__batches += 1;
      m.addedNodes.forEach(look);
      const target = m.target instanceof Element ? m.target : m.target.parentElement;
      const stream = target && target.closest(".stream-text");
      if (stream && stream.textContent.includes("onerror=")) window.__streamedCorpus = true;
    }
  }).observe(document, { subtree: true, childList: true, attributes: true });
})();
"""

# What may not be inside a message body, for `root` and everything in it: any element
# outside the renderer's allowlist, an event handler or htmx attribute, a URL attribute,
# a link whose scheme is not http(s) or mailto. A model reply must sit in an hx-disable
# container; a user's message must be text only.
CHECK = """
(root) => {
  const TAGS = new Set(["A", "B", "BLOCKQUOTE", "BR", "CODE", "DEL", "DIV", "EM", "H1", "H2",
    "H3", "H4", "H5", "H6", "HR", "I", "INPUT", "LI", "OL", "P", "PRE", "S", "SPAN", "STRONG",
    "SUB", "SUP", "TABLE", "TBODY", "TD", "TH", "THEAD", "TR", "UL"]);
  const URL_ATTRS = ["src", "srcdoc", "srcset", "action", "formaction", "data", "xlink:href",
    "background", "poster", "style"];
  const problems = [];
  const bodies = root.matches(".message-body") ? [root]
    : root.closest(".message-body") ? [root.closest(".message-body")]
    : [...root.querySelectorAll(".message-body")];
  for (const body of bodies) {
    const where = (body.closest("article") || body).id;
    if (body.closest(".message--assistant") && !body.closest("[hx-disable]"))
      problems.push(where + ": model output outside an hx-disable container");
    if (body.closest(".message--user") && body.children.length)
      problems.push(where + ": markup in a user's message: " + body.innerHTML.slice(0, 80));
    for (const el of [body, ...body.querySelectorAll("*")]) {
      // chat.js adds a Copy button to each code block's bar: the page's, not the text's.
      const ours = el.matches(".codeblock-bar > button.copy-code[type=button]");
      if (el !== body && !TAGS.has(el.tagName) && !ours)
        problems.push(where + ": <" + el.tagName.toLowerCase() + ">");
      for (const attr of el.attributes) {
        const name = attr.name.toLowerCase();
        if (name.startsWith("on")) problems.push(where + ": " + name + " on " + el.tagName);
        if (name.startsWith("hx-") && !(el === body && name === "hx-disable"))
          problems.push(where + ": " + name + " on " + el.tagName);
        if (URL_ATTRS.includes(name)) problems.push(where + ": " + name + " on " + el.tagName);
      }
      if (el.tagName === "A" && el.hasAttribute("href")
          && !["http:", "https:", "mailto:"].includes(el.protocol))
        problems.push(where + ": a link to " + el.getAttribute("href"));
    }
  }
  return problems;
}
"""

# The whole page: everything CHECK says about the message bodies, and, anywhere on the
# page, no event-handler attribute, no inline script, no frame, no plugin, no <base>.
SCAN = (
    "() => { const problems = ("
    + CHECK
    + """)(document.documentElement);
  for (const el of document.querySelectorAll("*"))
    for (const attr of el.attributes)
      if (attr.name.toLowerCase().startsWith("on")) problems.push("page: " + attr.name);
  for (const el of document.querySelectorAll(
      "script:not([src]):not([type='application/json']), iframe, frame, object, embed,"
      + " base, img:not([src^='/'])"))
    problems.push("page: <" + el.tagName.toLowerCase() + ">");
  return problems;
}"""
)


@dataclass
class Watched:
    """What the browser did that it must not: dialogs, outside requests, errors."""

    app_host: str
    dialogs: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def route(self, route: Route) -> None:
        if urlsplit(route.request.url).netloc != self.app_host:
            self.outside.append(route.request.url)
            route.abort()
        else:
            route.continue_()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    env = {**SIMULATED_CLAUDE, "SIMULATOR_LATENCY_MS": "5"}
    with served(tmp_path_factory.mktemp("xss"), **env) as running:
        yield running


def watched_context(browser: Browser, app: Served) -> tuple[BrowserContext, Watched]:
    context = browser.new_context(base_url=app.url, accept_downloads=True)
    watched = Watched(urlsplit(app.url).netloc)
    context.route("**/*", watched.route)
    context.add_init_script(WATCH % CHECK)
    return context, watched


def new_page(context: BrowserContext, watched: Watched) -> Page:
    page = context.new_page()
    page.on("dialog", lambda dialog: (watched.dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: watched.errors.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            watched.errors.append(f"{page.url}: {message.text}")
            if message.type == "error"
            else None
        ),
    )
    return page


def assert_clean(page: Page, watched: Watched, where: str) -> None:
    """Nothing ran, nothing called out, nothing unsafe is or was in the DOM."""
    assert page.evaluate("() => window.__xss") is None, where
    assert watched.dialogs == [], where
    assert watched.outside == [], where
    assert page.evaluate(SCAN) == [], where
    assert page.evaluate("() => window.__bad") == [], where
    assert page.evaluate("() => window.__csp") == [], where
    assert watched.errors == [], where


def settled_reply(page: Page, number: int = 1) -> None:
    reply = page.locator("article.message--assistant").nth(number - 1)
    expect(reply).to_have_attribute("data-status", "complete", timeout=SETTLE)


def send(page: Page, text: str) -> None:
    page.get_by_role("textbox", name="Message").fill(text)
    page.get_by_role("button", name="Send").click()


def test_a_hostile_reply_streams_renders_and_reloads_as_text(app: Served):
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context, watched = watched_context(browser, app)
        page = new_page(context, watched)
        sign_up(page, "mallory")

        send(page, "Show me some hostile markup [sim:html]")
        settled_reply(page)
        # The corpus came through the stream (batch by batch, watched as it grew) ...
        assert page.evaluate("() => window.__streamedCorpus")
        assert page.evaluate("() => window.__batches") > 5
        # ... and the final render shows it as text.
        reply = page.locator("article.message--assistant .markdown")
        expect(reply).to_contain_text("<script>alert('xss-script'); window.__xss = 'script'")
        expect(reply).to_contain_text("""<img src=x onerror="alert('xss-img'); window.__xss""")
        expect(reply).to_contain_text("[a javascript link](javascript:alert('xss-link'))")
        assert reply.evaluate("el => el.closest('[hx-disable]') !== null")
        assert_clean(page, watched, "after the stream")

        # Links that survive point out with a full address; an outside image is a link.
        hrefs = reply.locator("a[href]").evaluate_all("els => els.map(a => a.href)")
        assert hrefs == ["http://evil.example/x.png", "https://evil.example/pixel.png"]
        # Table alignment came as classes: an inline style would be a CSP violation.
        expect(reply.locator("th.align-right")).to_have_count(1)

        # History: the same reply from the database.
        page.reload()
        settled_reply(page)
        expect(page.get_by_role("textbox", name="Message")).to_be_visible()  # still signed in
        assert_clean(page, watched, "after a reload")

        page.goto("/conversations/?q=hostile")
        expect(page.locator("#all-conversations a")).to_have_count(1)
        assert_clean(page, watched, "in search")
        browser.close()


def test_a_hostile_user_message_is_text_everywhere(app: Served):
    # The title comes from the message's first line: hostile too.
    hostile = (
        "<script>window.__xss = 'title'</script><img src=x onerror=\"alert('xss-title')\">\n"
        + XSS_CORPUS
        + "\n[sim:html] [sim:latency=12]"
    )
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context, watched = watched_context(browser, app)
        page = new_page(context, watched)
        sign_up(page, "trudy")

        send(page, hostile)
        page.wait_for_function("() => window.__streamedCorpus", timeout=SETTLE)
        asked = page.locator("article.message--user .message-body")
        expect(asked).to_contain_text("<script>window.__xss = 'title'</script>")
        expect(asked).to_contain_text("<iframe srcdoc=")
        assert_clean(page, watched, "while streaming")

        # A reload mid-stream: the checkpointed text, then the rest of the stream.
        page.reload()
        streaming = page.locator("article.message--assistant .stream-text")
        expect(streaming).to_contain_text("<script>window.__xss = 'title'</script>")
        assert_clean(page, watched, "reloaded mid-stream")
        settled_reply(page)
        conversation = page.url
        reply = page.locator("article.message--assistant .markdown")
        expect(reply).to_contain_text("You asked: “<script>window.__xss = 'title'</script>")
        assert_clean(page, watched, "after the stream")
        page.reload()
        settled_reply(page)
        assert_clean(page, watched, "after a reload")
        expect(page.locator("#conversation-list a")).to_contain_text(["<script>"])
        assert "<script>" in page.title()

        # The list, and a search whose words are echoed on the page.
        page.goto("/conversations/")
        expect(page.locator("#all-conversations a")).to_contain_text(["<script>"])
        assert_clean(page, watched, "in the list")
        page.goto("/conversations/?q=" + quote("""<img src=x onerror="alert('xss-title')">"""))
        expect(page.locator("#all-conversations a")).to_have_count(1)
        expect(page.get_by_role("heading", level=1)).to_contain_text("""onerror="alert(""")
        assert_clean(page, watched, "in search")

        # Export: downloaded as files, never shown as a page.
        page.goto(conversation)
        for name, suffix in (("Export Markdown", "md"), ("Export JSON", "json")):
            page.get_by_role("button", name="Conversation menu").click()
            with page.expect_download() as download:
                page.get_by_role("link", name=name, exact=True).click()
            saved = Path(download.value.path())
            assert download.value.suggested_filename.endswith(f".{suffix}")
            assert "<script>alert('xss-script')" in saved.read_text(encoding="utf-8")
        assert_clean(page, watched, "after export")
        for suffix, content_type in (("md", "text/markdown"), ("json", "application/json")):
            response = context.request.get(f"{conversation}export.{suffix}")
            assert response.headers["content-type"] == f"{content_type}; charset=utf-8"
            assert response.headers["content-disposition"].startswith("attachment;")
            assert response.headers["x-content-type-options"] == "nosniff"
        browser.close()


MAKE_STAFF = """
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
users = get_user_model().objects
helper = users.create_user("helper", password="helper-passphrase-7", is_staff=True)
helper.groups.add(Group.objects.get(name="Support"))
users.create_superuser("root", password="root-passphrase-7")
"""


ADMIN_PAGES = (
    "/admin/",
    "/admin/auth/user/",
    "/admin/auth/user/add/",
    "/admin/auth/user/1/change/",
    "/admin/billing/usagerecord/",
    "/admin/billing/catalogmodel/",
    "/admin/conversations/conversation/",
)


def sign_in(page: Page, username: str, password: str, path: str) -> None:
    page.goto(f"/accounts/login/?next={path}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{path}")


def test_ordinary_pages_raise_no_violation_and_the_policy_blocks_the_rest(app: Served):
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", MAKE_STAFF],
        cwd=ROOT,
        env=app.env,
        check=True,
        capture_output=True,
    )
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context, watched = watched_context(browser, app)
        page = new_page(context, watched)

        # Signed out: sign-in and sign-up.
        page.goto("/accounts/login/")
        assert_clean(page, watched, "sign-in")
        page.goto("/admin/login/")
        assert_clean(page, watched, "admin sign-in")
        sign_up(page, "olivia")
        # The chat: a reply streamed over the websocket (connect-src 'self' lets it through).
        send(page, "Hello there [sim:tokens=40]")
        settled_reply(page)
        assert_clean(page, watched, "chat")
        page.reload()  # the conversation's own page, with its menu and dialogs of forms
        page.get_by_role("button", name="Conversation menu").click()
        page.get_by_role("link", name="Settings…").click()
        expect(page.get_by_role("dialog", name="Conversation settings")).to_be_visible()
        assert_clean(page, watched, "conversation menu")
        page.keyboard.press("Escape")
        # The language picker posts and reloads, in French, then back.
        page.get_by_label("Language").select_option("fr")
        expect(page.locator("html")).to_have_attribute("lang", "fr")
        assert_clean(page, watched, "after picking a language")
        page.get_by_label("Langue").select_option("en")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        conversation = urlsplit(page.url).path
        for path in ("/conversations/", "/conversations/?archived=1", "/usage/"):
            page.goto(path)
            assert_clean(page, watched, path)
        page.goto(f"{conversation}delete/")
        expect(page.get_by_role("button", name="Delete")).to_be_visible()
        assert_clean(page, watched, "delete")

        # Support's dashboard with its SVG charts; Django admin.
        staff_context, staff_watched = watched_context(browser, app)
        staff = new_page(staff_context, staff_watched)
        sign_in(staff, "helper", "helper-passphrase-7", "/support/")
        expect(staff.get_by_role("img", name="Service spend per day")).to_be_visible()
        assert_clean(staff, staff_watched, "support dashboard")
        admin_context, admin_watched = watched_context(browser, app)
        admin = new_page(admin_context, admin_watched)
        sign_in(admin, "root", "root-passphrase-7", "/admin/")
        admin_conversation = "/admin/conversations/conversation/" + conversation.split("/")[2]
        for path in (*ADMIN_PAGES, f"{admin_conversation}/change/"):
            response = admin.goto(path)
            assert response is not None and response.status == 200, path
            expect(admin.locator("#content")).to_be_visible()
            assert_clean(admin, admin_watched, path)

        # What the policy blocks by itself, were anything to slip past the sanitiser.
        page.goto("/")
        blocked = page.evaluate(
            """async () => {
              const img = new Image();
              const loaded = new Promise((done) => { img.onload = () => done("loaded");
                                                     img.onerror = () => done("blocked"); });
              img.src = "http://evil.example/csp-probe.png";
              document.body.append(img);
              const script = document.createElement("script");
              script.textContent = "window.__xss = 'inline script'";
              document.body.append(script);
              const style = document.createElement("style");
              style.textContent = "body { background: url(http://evil.example/bg.png) }";
              document.head.append(style);
              const button = document.createElement("button");
              button.setAttribute("onclick", "window.__xss = 'inline handler'");
              document.body.append(button);
              button.click();
              await new Promise((done) => setTimeout(done, 300));
              return { image: await loaded, violations: window.__csp };
            }"""
        )
        assert blocked["image"] == "blocked"
        assert page.evaluate("() => window.__xss") is None
        directives = {line.split()[0] for line in blocked["violations"]}
        assert directives == {"img-src", "script-src-elem", "style-src-elem", "script-src-attr"}, (
            blocked["violations"]
        )
        # htmx runs no attribute code, no script tags it swaps in, and injects no style.
        assert page.evaluate(
            "() => [htmx.config.allowEval, htmx.config.allowScriptTags,"
            " htmx.config.includeIndicatorStyles]"
        ) == [False, False, False]
        assert watched.outside == []  # refused by the browser before any request
        browser.close()
