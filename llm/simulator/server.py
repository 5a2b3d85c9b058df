"""Serving the simulator over real HTTP with uvicorn: in the foreground or in a thread."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from dataclasses import dataclass

import uvicorn

from .app import Simulator, SimulatorConfig


class _DeliberateBreakFilter(logging.Filter):
    """`[sim:break-after=N]` ends a response unfinished on purpose; do not log it as a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


def _config(app: Simulator, host: str, port: int, log_level: str) -> uvicorn.Config:
    logging.getLogger("uvicorn.error").addFilter(_DeliberateBreakFilter())
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_keep_alive=30,
        # Many concurrent streams: do not cap connections.
        limit_concurrency=None,
    )


def serve_forever(config: SimulatorConfig, *, host: str, port: int) -> None:
    uvicorn.Server(_config(Simulator(config), host, port, "info")).run()


@dataclass
class RunningSimulator:
    url: str
    app: Simulator
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def start_in_thread(
    config: SimulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> RunningSimulator:
    """Start the simulator on its own event loop in a daemon thread; return once it listens."""
    app = Simulator(config)
    port = port or _free_port(host)
    # uvicorn installs no signal handlers off the main thread (Server.capture_signals).
    server = uvicorn.Server(_config(app, host, port, "warning"))

    def run() -> None:
        asyncio.run(server.serve())

    thread = threading.Thread(target=run, name="claude-4-6-simulator", daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        if not thread.is_alive():
            raise RuntimeError(f"The simulator could not start on {host}:{port}")
        threading.Event().wait(0.01)
    else:
        raise RuntimeError("The simulator did not start within 5 seconds")
    return RunningSimulator(url=f"http://{host}:{port}", app=app, server=server, thread=thread)
