"""Helpers for browser tests: the app served by `manage.py serve` in a process of its own,
and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .conftest import require

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listened on {port} within {timeout}s")


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[bytes]
    env: dict[str, str]


@contextmanager
def served(tmp: Path, *args: str, **env: str) -> Iterator[Served]:
    """`manage.py serve` on a fresh SQLite file, as a user starts it, in its own process.
    With no `args` (more options for `serve`) and no `env`, it is the README's command on
    a fresh clone."""
    port = free_port()
    environment = {
        k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "REDIS_URL"}
    }
    for name in ("LLM_PROVIDER", "LLM_MODEL", "ANTHROPIC_SIMULATOR", "ANTHROPIC_API_KEY"):
        environment.pop(name, None)
    environment.update({"DATABASE_URL": f"sqlite:///{tmp / 'app.sqlite3'}", **env})
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), *args],
        cwd=ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc)
        yield Served(f"http://127.0.0.1:{port}", proc, environment)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextmanager
def served_app(tmp: Path, **env: str) -> Iterator[str]:
    """Like `served`, yielding the app's URL."""
    with served(tmp, **env) as app:
        yield app.url


# The claude-4-6 simulator inside `serve`, so tests can drive it with directives.
SIMULATED_CLAUDE = {"LLM_PROVIDER": "anthropic", "ANTHROPIC_SIMULATOR": "true"}


def launch_chromium(playwright):  # type: ignore[no-untyped-def]
    if not Path(CHROMIUM).exists():
        require("Chromium", f"{CHROMIUM} is missing (apt-get install chromium)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    _scan_frames(browser)
    return browser


def _scan_frames(browser) -> None:  # type: ignore[no-untyped-def]
    """Every websocket frame this browser's pages receive goes through the session's scan
    for the provider key (tests/secret_scan.py)."""
    from .conftest import SCAN

    new_context, new_page = browser.new_context, browser.new_page

    def watched_context(*args, **kwargs):  # type: ignore[no-untyped-def]
        context = new_context(*args, **kwargs)
        SCAN.watch_browser(context)
        return context

    def watched_page(*args, **kwargs):  # type: ignore[no-untyped-def]
        page = new_page(*args, **kwargs)
        SCAN.watch_browser(page)
        return page

    browser.new_context, browser.new_page = watched_context, watched_page


# The looks Step 10's tests are checked in: a desktop, light and dark, and a phone.
LOOKS: dict[str, dict[str, object]] = {
    "desktop-light": {"viewport": {"width": 1440, "height": 900}, "color_scheme": "light"},
    "desktop-dark": {"viewport": {"width": 1440, "height": 900}, "color_scheme": "dark"},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "is_mobile": True,
        "has_touch": True,
    },
}
