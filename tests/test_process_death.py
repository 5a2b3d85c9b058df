"""The process running a generation is killed: recovery settles the turn, nothing re-runs."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time

import httpx
import websockets

from .browser import ROOT, SIMULATED_CLAUDE, served


def sign_up(url: str) -> str:
    with httpx.Client(base_url=url) as client:
        client.get("/accounts/signup/")
        password = "a-long-passphrase-42"
        client.post(
            "/accounts/signup/",
            data={
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
                "username": "alice",
                "password1": password,
                "password2": password,
            },
            headers={"Referer": url + "/accounts/signup/"},
        )
        return client.cookies["sessionid"]


async def start_long_turn(url: str, session: str) -> None:
    async with websockets.connect(
        url.replace("http", "ws", 1) + "/ws/chat/",
        origin=url,
        additional_headers={"Cookie": f"sessionid={session}"},
    ) as socket:
        await socket.send(
            json.dumps(
                {
                    "type": "send",
                    "conversation": "",
                    "client_id": "k1",
                    "message": "A long one [sim:tokens=500]",
                }
            )
        )
        batches = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if "beforeend:#m-" in await socket.recv():
                batches += 1
            if batches >= 30:  # well past the first checkpoint (about once a second)
                return
        raise AssertionError("the reply did not stream")


def test_a_killed_process_leaves_an_interrupted_reply_and_a_settled_reservation(tmp_path):
    with served(tmp_path, **SIMULATED_CLAUDE, SIMULATOR_LATENCY_MS="60") as app:
        session = sign_up(app.url)
        asyncio.run(start_long_turn(app.url, session))
        app.proc.send_signal(signal.SIGKILL)
        app.proc.wait(timeout=10)
        env = app.env

    database = sqlite3.connect(tmp_path / "app.sqlite3")
    status, content, reservation_id = database.execute(
        "SELECT status, content, reservation_id FROM conversations_message WHERE role = 'assistant'"
    ).fetchone()
    assert status == "streaming" and content  # died mid-stream, text checkpointed
    assert database.execute("SELECT reserved_micros FROM billing_dailyspend").fetchall() != [
        (0,),
        (0,),
    ]
    database.close()

    out = subprocess.run(
        [sys.executable, "manage.py", "recover", "--stale-after", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "Recovered 1 interrupted turn(s)." in out

    database = sqlite3.connect(tmp_path / "app.sqlite3")
    status, after, error_kind, cost = database.execute(
        "SELECT status, content, error_kind, cost_micros FROM conversations_message "
        "WHERE role = 'assistant'"
    ).fetchone()
    assert (status, error_kind) == ("interrupted", "interrupted")
    assert after == content  # the partial text is kept
    state, charged = database.execute(
        "SELECT state, charged_micros FROM billing_reservation WHERE id = ?", (reservation_id,)
    ).fetchone()
    assert state == "settled" and charged == cost > 0
    spends = database.execute(
        "SELECT spent_micros, reserved_micros FROM billing_dailyspend"
    ).fetchall()
    assert spends == [(charged, 0), (charged, 0)]
    # One upstream request only: nothing was re-run.
    assert database.execute("SELECT COUNT(*) FROM billing_usagerecord").fetchone() == (1,)
