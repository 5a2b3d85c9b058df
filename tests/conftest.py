"""Shared fixtures: the simulator on loopback, named people, and websocket clients.

alice owns conversations; bob is another user who must never see them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from http.cookies import SimpleCookie

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from chatsite.asgi import application
from llm.simulator import RunningSimulator, SimulatorConfig, start_in_thread

from .secret_scan import SecretScan

TEST_KEY = "sk-test-4b1d-never-shown"
PG_ADMIN_URL = os.environ.get("PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/14")
ORIGIN = "http://127.0.0.1:8000"
HOST = "127.0.0.1:8000"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Give every test database access; async tests need real transactions.
    for item in items:
        if item.get_closest_marker("django_db") is None:
            item.add_marker(pytest.mark.django_db(transaction=True))


SCAN = SecretScan({"the provider key": TEST_KEY})


@pytest.fixture(scope="session", autouse=True)
def secret_scan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretScan]:
    """The provider's key appears in nothing the suite produced: no log line, response,
    websocket frame or server log (tests/secret_scan.py). Checked when the session ends."""
    SCAN.install()
    yield SCAN
    SCAN.check_files(tmp_path_factory.getbasetemp().rglob("*.log"))
    assert not SCAN.hits, "the provider's key was seen:\n" + "\n".join(map(str, SCAN.hits[:20]))


@pytest.fixture(scope="session")
def simulator() -> Iterator[RunningSimulator]:
    """The claude-4-6 simulator as a real HTTP server, fast enough for tests."""
    running = start_in_thread(
        SimulatorConfig(latency_ms=1, rpm=100_000, api_key=TEST_KEY, ping_every=5)
    )
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def catalog(db: None) -> None:
    """The catalog rows the data migration seeds. Transactional tests empty every table
    after each test, data-migration rows included, so each test seeds them again."""
    from importlib import import_module

    from billing.models import CatalogModel

    for fields in import_module("billing.migrations.0003_seed_catalog").MODELS:
        CatalogModel.objects.update_or_create(slug=fields["slug"], defaults=fields)


@pytest.fixture(autouse=True)
def english() -> Iterator[None]:
    """Every test starts in the default language (a page request in another language
    leaves it active in the thread, as a server's next request would reset it)."""
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.activate(settings.LANGUAGE_CODE)


@pytest.fixture(autouse=True)
def use_simulator(simulator: RunningSimulator, settings: object) -> RunningSimulator:
    settings.LLM_PROVIDER = "anthropic"  # type: ignore[attr-defined]
    settings.LLM_MODEL = "claude-4-6"  # type: ignore[attr-defined]
    settings.ANTHROPIC_BASE_URL = simulator.url  # type: ignore[attr-defined]
    settings.ANTHROPIC_API_KEY = TEST_KEY  # type: ignore[attr-defined]
    settings.STREAM_BATCH_INTERVAL_MS = 20  # type: ignore[attr-defined]
    # The session's simulator allows 100,000 a minute; tests of the limiter set their own.
    settings.UPSTREAM_RPM = 100_000  # type: ignore[attr-defined]
    return simulator


@pytest.fixture
def alice(django_user_model):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user("alice", password="alice-password-1")


@pytest.fixture
def bob(django_user_model):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user("bob", password="bob-password-1")


def session_cookie(user: object) -> str:
    client = Client()
    client.force_login(user)  # type: ignore[arg-type]
    cookie = SimpleCookie()
    cookie[settings.SESSION_COOKIE_NAME] = client.cookies[settings.SESSION_COOKIE_NAME].value
    return cookie.output(header="", sep="; ").strip()


def communicator(
    cookie: str | None = None,
    *,
    origin: str | None = ORIGIN,
    path: str = "/ws/chat/",
    host: str = HOST,
) -> WebsocketCommunicator:
    """A socket as the page at ORIGIN opens it: the browser sends the Host it connects to."""
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


def send_frame(text: str, client_id: str, conversation: str = "", model: str = "") -> str:
    """What the page's composer sends over the websocket."""
    import json

    return json.dumps(
        {
            "type": "send",
            "message": text,
            "client_id": client_id,
            "conversation": conversation,
            "model": model,
        }
    )


def require(thing: str, reason: str) -> None:
    """Skip on a laptop without `thing`; fail in CI, where it must be there."""
    if os.environ.get("REQUIRE_SERVICES") or os.environ.get("CI"):
        pytest.fail(f"{thing} is required here: {reason}")
    pytest.skip(f"{thing} is not available: {reason}")


@pytest.fixture
def alice_cookie(alice: object) -> str:
    return session_cookie(alice)


@pytest.fixture
def bob_cookie(bob: object) -> str:
    return session_cookie(bob)


async def receive_until(
    comm: WebsocketCommunicator, needle: str, *, timeout: float = 10.0
) -> list[str]:
    """Every frame received up to and including the first that contains `needle`."""
    import asyncio

    frames: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"no frame with {needle!r} within {timeout}s; got {frames}")
        try:
            frame = await comm.receive_from(timeout=remaining)
        except TimeoutError:
            raise AssertionError(
                f"no frame with {needle!r} within {timeout}s; got {frames}"
            ) from None
        frames.append(frame)
        if needle in frame:
            return frames


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for processes of their own, dropped afterwards."""
    import uuid

    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:
        require("PostgreSQL", f"cannot connect to {PG_ADMIN_URL}: {exc}")
    name = f"chat_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database of its own, emptied before and after."""
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except Exception as exc:
        require("Redis", f"cannot reach {REDIS_TEST_URL}: {exc}")
    try:
        yield REDIS_TEST_URL
    finally:
        client.flushdb()
        client.close()
