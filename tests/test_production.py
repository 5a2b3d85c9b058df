"""The production shape: `manage.py serve --workers N` on PostgreSQL and Redis, several
uvicorn worker processes on one socket, and the combinations it refuses."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import httpx
import pytest
from django.core.management import CommandError, call_command

from llm.simulator.replies import reply_text

from .browser import ROOT, SIMULATED_CLAUDE, served
from .conftest import send_frame
from .streams import StreamCopy, shown
from .test_process_death import sign_up
from .test_serving import connect, follow, started


def wait_until_healthy(url: str, timeout: float = 90) -> None:
    """The parent binds the socket before its workers have imported the app: the port
    answers early, /healthz only once a worker serves."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"/healthz did not answer within {timeout}s")


def turns_completed(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('chat_turns_total{outcome="complete"} '):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_two_workers_on_postgres_and_redis_serve_a_whole_chat_turn(
    tmp_path, postgres_url, redis_url
):
    env = {
        **SIMULATED_CLAUDE,
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "SIMULATOR_LATENCY_MS": "15",
        "METRICS_TOKEN": "metrics-token",
    }
    with served(tmp_path, "--workers", "2", **env) as app:
        wait_until_healthy(app.url)
        # Ready: the database, a round trip through Redis, and the simulator, which runs
        # in the parent process, reached from a worker.
        ready = httpx.get(app.url + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json() == {
            "ready": True,
            "database": "ok",
            "channel_layer": "ok",
            "provider": "ok",
        }

        session = sign_up(app.url)  # the session is in PostgreSQL: every worker knows it
        prompt = "Served by several workers [sim:tokens=80]"

        async def scenario() -> list[StreamCopy]:
            async with connect(app.url, session) as sender:
                await sender.send(send_frame(prompt, "w1"))
                conversation, reply = await started(sender)
                # More sockets on the same conversation, each accepted by whichever worker
                # took the connection: every one of them gets the whole reply.
                copies = [StreamCopy(reply) for _ in range(4)]
                watchers = [await connect(app.url, session).__aenter__() for _ in range(3)]
                try:
                    for watcher in watchers:
                        await watcher.send(
                            json.dumps(
                                {
                                    "type": "subscribe",
                                    "conversation": conversation,
                                    "resume": {reply: 0},
                                }
                            )
                        )
                    await asyncio.gather(
                        *(
                            follow(socket, copy)
                            for socket, copy in zip([sender, *watchers], copies, strict=True)
                        )
                    )
                finally:
                    for watcher in watchers:
                        await watcher.close()
                return copies

        copies = asyncio.run(scenario())
        for copy in copies:
            assert copy.status == "complete"
            assert copy.html == shown(reply_text(prompt, tokens=80))

        # /metrics adds up every worker (a shared PROMETHEUS_MULTIPROC_DIR): whichever
        # worker answers, the one turn is counted once.
        for _ in range(6):
            scraped = httpx.get(
                app.url + "/metrics",
                headers={"Authorization": "Bearer metrics-token"},
                timeout=10,
            )
            assert scraped.status_code == 200
            assert turns_completed(scraped.text) == 1.0

    log = (tmp_path / "serve.log").read_text()
    assert "uvicorn, 2 worker processes" in log
    assert log.count("Started server process") == 2


def test_several_workers_without_redis_are_refused_before_anything_is_done(tmp_path):
    environment = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    environment["DATABASE_URL"] = f"sqlite:///{tmp_path / 'app.sqlite3'}"
    result = subprocess.run(
        [sys.executable, "manage.py", "serve", "--workers", "2"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--workers 2 needs REDIS_URL" in result.stderr
    assert "in-memory channel layer" in result.stderr
    assert not (tmp_path / "app.sqlite3").exists()  # nothing was migrated


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 0}, "--workers must be 1 or more."),
        ({"workers": 2, "server": "daphne"}, "daphne serves one process"),
    ],
)
def test_impossible_server_options_are_refused(settings, options, message):
    settings.CHANNEL_LAYER_SHARED = True  # as with REDIS_URL: only the options are wrong
    with pytest.raises(CommandError, match=message):
        call_command("serve", **options)


def compose_environment(service: str) -> dict[str, str]:
    """A service's environment in docker-compose.yml, with every `${VAR:-default}` left at
    its default, as `docker compose up` with nothing set would give it."""
    import re

    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    environment = compose["services"][service]["environment"]
    return {
        name: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))
        for name, value in environment.items()
    }


def test_the_compose_placeholders_are_refused_at_start(tmp_path):
    environment = {
        **{k: v for k, v in os.environ.items() if k != "REDIS_URL"},
        **compose_environment("app"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.sqlite3'}",
    }
    assert environment["DEBUG"] == "false" and environment["REDIS_URL"]
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ops.E001" in result.stderr  # the development SECRET_KEY
    assert "ops.E002" in result.stderr  # '*' in ALLOWED_HOSTS


def test_the_readme_documents_every_environment_variable():
    import re

    read = set()
    folders = [
        folder
        for folder in ROOT.iterdir()
        if folder.is_dir() and folder.name not in {"tests", "bench"} and folder.name[0] != "."
    ]
    for path in (path for folder in folders for path in folder.rglob("*.py")):
        text = path.read_text()
        read |= set(re.findall(r'env(?:str|bool|int|float|list)\(\s*"(\w+)"', text))
        read |= set(re.findall(r'os\.environ(?:\.get\(|\[)"(\w+)"', text))
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)`|/ `(\w+)`", table, re.M))
    documented = {name for pair in documented for name in pair if name}
    assert len(read) > 50
    assert read - documented == set()
