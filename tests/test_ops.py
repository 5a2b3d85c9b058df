"""Health, readiness and metrics."""

from __future__ import annotations

import json

from django.test import Client

from .conftest import communicator, receive_until
from .test_conversation_features import client_for


def test_healthz_answers_without_a_session():
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.content == b"ok\n"


def test_readyz_checks_the_database_the_channel_layer_and_the_provider(settings):
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "ready": True,
        "database": "ok",
        "channel_layer": "ok",
        "provider": "ok",
    }
    settings.ANTHROPIC_BASE_URL = "http://127.0.0.1:9"  # nothing listens there
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["provider"].startswith("error: ") and not response.json()["ready"]


def test_metrics_are_for_staff_or_the_token(alice, settings, django_user_model):
    assert Client().get("/metrics").status_code == 403
    assert client_for(alice).get("/metrics").status_code == 403
    staff = django_user_model.objects.create_user("ops", password="x-ops-pass-1", is_staff=True)
    assert client_for(staff).get("/metrics").status_code == 200
    settings.METRICS_TOKEN = "s3cret-token"
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_a_turn_moves_the_metrics(alice, alice_cookie, settings):
    from channels.db import database_sync_to_async

    settings.METRICS_TOKEN = "t"

    def scrape() -> str:
        return Client().get("/metrics", HTTP_AUTHORIZATION="Bearer t").content.decode()

    before = await database_sync_to_async(scrape)()
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(
        text_data=json.dumps(
            {
                "type": "send",
                "message": "Count me [sim:tokens=12]",
                "client_id": "m1",
                "conversation": "",
            }
        )
    )
    await receive_until(comm, 'message--assistant" data-status="complete"')
    await comm.disconnect()
    after = await database_sync_to_async(scrape)()
    assert (
        _metric(after, 'chat_turns_total{outcome="complete"}')
        - _metric(before, 'chat_turns_total{outcome="complete"}')
        == 1
    )
    assert (
        _metric(after, 'chat_tokens_total{direction="output"}')
        - _metric(before, 'chat_tokens_total{direction="output"}')
        == 12
    )
    assert _metric(after, "chat_spend_micros_total") > _metric(before, "chat_spend_micros_total")
    assert _metric(after, "chat_time_to_first_token_seconds_count") > _metric(
        before, "chat_time_to_first_token_seconds_count"
    )
    assert _metric(after, "chat_active_streams") == 0


def test_logs_can_be_json_lines():
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('conversations').warning('reply %s: kind=server', 7)"
    )
    env = {**os.environ, "LOG_FORMAT": "json", "DJANGO_SETTINGS_MODULE": "chatsite.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["level"] == "WARNING" and line["logger"] == "conversations"
    assert line["message"] == "reply 7: kind=server" and "time" in line
