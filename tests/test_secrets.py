"""The provider's key never reaches a page, a frame, an error, a log line or the admin.

The whole suite is scanned for it (tests/secret_scan.py, installed by conftest and checked
when the session ends). These tests prove the scan sees each kind of output.
"""

from __future__ import annotations

import json
import logging
import uuid

from channels.db import database_sync_to_async
from django.test import Client

from conversations.models import Conversation

from .conftest import SCAN, communicator, receive_until, send_frame

PLANTED = "a planted secret"


async def test_the_scan_sees_logs_pages_frames_and_files(alice, alice_cookie, tmp_path):
    planted = f"sk-planted-{uuid.uuid4().hex}"
    SCAN.secrets[PLANTED] = planted
    try:
        logging.getLogger("anything").warning("oops %s", planted)

        def page() -> str:
            conversation = Conversation.objects.create(
                owner=alice, model="claude-4-6", title=planted
            )
            web = Client()
            web.force_login(alice)
            assert web.get(conversation.get_absolute_url()).status_code == 200
            return conversation.get_absolute_url()

        url = await database_sync_to_async(page)()
        socket = communicator(alice_cookie)
        assert (await socket.connect())[0]
        await socket.send_to(text_data=send_frame(f"say {planted} [sim:tokens=3]", "p1"))
        await receive_until(socket, 'data-status="complete"')
        await socket.send_to(text_data=json.dumps({"type": "nope"}))
        await socket.disconnect()
        (tmp_path / "server.log").write_text(f"started with {planted}\n")
        SCAN.check_files([tmp_path / "server.log"])

        seen = {hit.where for hit in SCAN.hits if hit.secret == PLANTED}
        assert "log anything" in seen
        assert f"response {url}" in seen
        assert "websocket frame" in seen
        assert "file server.log" in seen
        assert all(planted not in hit.around for hit in SCAN.hits)
    finally:
        del SCAN.secrets[PLANTED]
        SCAN.hits[:] = [hit for hit in SCAN.hits if hit.secret != PLANTED]


def test_a_simulator_key_is_recognised_wherever_it_turns_up():
    before = len(SCAN.hits)
    SCAN.check("a test", "ANTHROPIC_API_KEY=sim-AbCdEfGhIjKlMnOpQrStUv started")
    SCAN.check("a test", "nothing here: sim-short, simulator-AbCdEfGhIjKlMnOpQrStUv")
    found = SCAN.hits[before:]
    del SCAN.hits[before:]
    assert [hit.where for hit in found] == ["a test"]
    assert "sim-AbCd" not in found[0].around


def test_the_scan_sees_what_a_test_browser_receives(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from .browser import SIMULATED_CLAUDE, launch_chromium, served_app
    from .test_browser_chat import sign_up

    planted = f"sk-planted-{uuid.uuid4().hex}"
    SCAN.secrets[PLANTED] = planted
    try:
        env = {**SIMULATED_CLAUDE, "SIMULATOR_LATENCY_MS": "5"}
        with served_app(tmp_path, **env) as url, sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = browser.new_context(base_url=url).new_page()
            sign_up(page, "alice")
            page.get_by_label("Message").fill(f"repeat {planted} [sim:tokens=5]")
            page.get_by_role("button", name="Send").click()
            expect(
                page.locator('article.message--assistant[data-status="complete"]')
            ).to_have_count(1, timeout=20_000)
            browser.close()
        assert "browser frame" in {hit.where for hit in SCAN.hits if hit.secret == PLANTED}
    finally:
        del SCAN.secrets[PLANTED]
        SCAN.hits[:] = [hit for hit in SCAN.hits if hit.secret != PLANTED]
