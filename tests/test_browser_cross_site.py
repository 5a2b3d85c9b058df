"""Cross-site websocket hijacking, with a real browser as the attacker's tool.

alice is signed in to the app. She opens a page that another program serves on the same
machine (another port: the same *site* to the browser, so her SameSite=Lax cookies go with
the handshake). Its script opens the app's websocket and asks for her conversation. The
handshake must be refused before it opens, and nothing of hers may reach that page.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect, sync_playwright

from .browser import SIMULATED_CLAUDE, launch_chromium, served_app
from .test_browser_chat import sign_up

pytestmark = pytest.mark.browser

# The attacker's page: open the app's socket, ask for alice's conversation, keep what comes.
EVIL_PAGE = """<!doctype html><title>Free prizes</title><script>
window.outcome = "pending"; window.received = [];
const socket = new WebSocket(%(socket)s);
socket.onopen = () => {
  window.outcome = "open";
  socket.send(JSON.stringify({type: "subscribe", conversation: %(conversation)s,
                              resume: {}}));
  socket.send(JSON.stringify({type: "send", conversation: %(conversation)s,
                              message: "sent by evil", client_id: "evil-1"}));
};
socket.onmessage = (event) => window.received.push(event.data);
socket.onclose = (event) => {
  if (window.outcome === "pending") window.outcome = "refused " + event.code;
};
</script>"""


@pytest.fixture
def evil_site() -> Iterator[dict[str, object]]:
    """A page server on another port of 127.0.0.1; set `page` before the visit."""
    state: dict[str, object] = {"page": ""}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = str(state["page"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/"
    yield state
    server.shutdown()


def test_another_sites_page_cannot_use_alices_socket(tmp_path, evil_site):
    env = {**SIMULATED_CLAUDE, "SIMULATOR_LATENCY_MS": "5"}
    with served_app(tmp_path, **env) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(base_url=url)
        page = context.new_page()
        sign_up(page, "alice")
        page.get_by_label("Message").fill("my secret plan [sim:tokens=5]")
        page.get_by_role("button", name="Send").click()
        expect(page.locator('article.message--assistant[data-status="complete"]')).to_have_count(
            1, timeout=20_000
        )
        conversation = page.locator("#chat-state").get_attribute("data-conversation")
        socket_url = url.replace("http://", "ws://") + "/ws/chat/"

        # Control: from the app's own page the same socket opens and answers.
        opened = page.evaluate(
            """url => new Promise(done => {
                 const s = new WebSocket(url);
                 s.onopen = () => { s.close(); done("open"); };
                 s.onclose = (e) => done("refused " + e.code);
               })""",
            socket_url,
        )
        assert opened == "open"

        evil_site["page"] = EVIL_PAGE % {
            "socket": json.dumps(socket_url),
            "conversation": json.dumps(conversation),
        }
        evil = context.new_page()  # the same browser: alice's cookies are there
        evil.goto(str(evil_site["url"]))
        evil.wait_for_function("window.outcome !== 'pending'", timeout=10_000)
        assert evil.evaluate("window.outcome").startswith("refused"), evil.evaluate(
            "window.outcome"
        )
        assert evil.evaluate("window.received") == []

        # Nothing was sent in her name: her conversation has her one message and its reply.
        page.reload()
        expect(page.locator("article.message")).to_have_count(2)
        expect(page.get_by_text("sent by evil")).to_have_count(0)
        browser.close()
