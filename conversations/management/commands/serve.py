"""`manage.py serve`: migrate, check, then serve HTTP and websockets.

With no flags it is the laptop: one daphne process, exactly what a fresh clone needs (SQLite,
the in-memory channel layer, the built-in local model). With ANTHROPIC_SIMULATOR on it also
starts the claude-4-6 simulator inside the process and points the anthropic provider at it.

`--workers N` is production: N ASGI worker processes on one listening socket, run by
uvicorn's multi-process supervisor (it restarts a worker that dies). Migrations, the system
checks, turn recovery and the simulator (if on) run once, in the parent, before the workers
start; the workers only serve. Several workers need REDIS_URL: a socket in one worker sees a
reply generated in another only through a shared channel layer.

Why uvicorn for several processes: daphne has no supervisor of its own (it can only be
handed a socket by something else), and uvicorn's is in the dependencies already. Which of
the two serves faster per process is measured by `bench/streams.py`; the figures and the
choice of server for one and for several processes are in bench/RESULTS.md. `--server`
picks either for one process, so both can be measured with this same command.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

# Seconds. Pings find sockets whose client vanished without closing (a laptop lid, a
# dropped network); the same figures as the one-process daphne server.
PING_INTERVAL = 20
PING_TIMEOUT = 30
# Longer than a load balancer's idle timeout (60 s on most), so the app never closes a
# kept-alive connection the balancer is about to reuse (which the client sees as a 502).
KEEP_ALIVE = 75
# On SIGTERM, how long open requests get to finish before a worker stops. Replies being
# written are not waited for: recovery settles them as interrupted.
GRACEFUL_SHUTDOWN = 10


class Command(BaseCommand):
    help = (
        "Apply migrations and serve the chat app (HTTP and websockets): one daphne process "
        "by default; --workers N runs N uvicorn worker processes (needs REDIS_URL). The "
        "server choice follows the figures in bench/RESULTS.md."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-migrate", action="store_true", help="skip migrations")
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            help="worker processes (default 1); more than one needs REDIS_URL",
        )
        parser.add_argument(
            "--server",
            choices=["daphne", "uvicorn"],
            default=None,
            help="daphne (default for one process) or uvicorn (the only one for several)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        workers: int = options["workers"]
        server: str = options["server"] or ("daphne" if workers == 1 else "uvicorn")
        # Refused before anything is touched: a bad combination must not migrate first.
        refuse_unsafe_workers(workers=workers, server=server)

        if not options["no_migrate"]:
            call_command("migrate", interactive=False, verbosity=1)
        if settings.ANTHROPIC_SIMULATOR:
            self._start_simulator()
        # After migrating (the checks read the model catalog) and after the simulator set
        # its URL and key. A check that fails is also an alert for the administrators.
        self._alert_failed_checks()
        self.check(display_num_errors=True)
        self._start_recovery()
        self._start_alert_sender()

        host, port = options["host"], options["port"]
        if server == "daphne":
            self._serve_daphne(host, port)
        else:
            self._serve_uvicorn(host, port, workers)

    def _serve_daphne(self, host: str, port: int) -> None:
        # daphne installs Twisted's asyncio reactor on import: it must come before the app.
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        from chatsite.asgi import application

        self.stdout.write(self.style.SUCCESS(f"Serving on http://{host}:{port}/ (daphne)"))
        Server(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            signal_handlers=True,
            ping_interval=PING_INTERVAL,
            ping_timeout=PING_TIMEOUT,
            websocket_handshake_timeout=10,
            # As uvicorn's ws_max_size: a message the app would refuse anyway (it counts
            # characters, up to 4 bytes each) is dropped by the server, not buffered.
            websocket_max_message_size=settings.WS_MAX_MESSAGE_CHARS * 4,
            websocket_max_frame_size=settings.WS_MAX_MESSAGE_CHARS * 4,
            application_close_timeout=GRACEFUL_SHUTDOWN,
            server_name="chatsite",
        ).run()

    def _serve_uvicorn(self, host: str, port: int, workers: int) -> None:
        import uvicorn

        cleanup = prepare_metrics_directory(workers)
        # The workers are new processes (spawned, not forked): nothing of this one's
        # connections, threads or memory goes with them. Close the database connections
        # the migration and the checks used; recovery opens its own.
        connections.close_all()
        self.stdout.write(
            self.style.SUCCESS(
                f"Serving on http://{host}:{port}/ (uvicorn, {workers} worker process"
                f"{'es' if workers > 1 else ''})"
            )
        )
        try:
            uvicorn.run(
                # An import string: each worker imports the app itself.
                "chatsite.asgi:application",
                host=host,
                port=port,
                workers=workers,
                # Channels answers no lifespan events.
                lifespan="off",
                # Websocket frames above what the consumer accepts are refused by the
                # protocol, before they are buffered: the limit is in characters, and a
                # character is at most 4 bytes of UTF-8.
                ws_max_size=settings.WS_MAX_MESSAGE_CHARS * 4,
                ws_ping_interval=PING_INTERVAL,
                ws_ping_timeout=PING_TIMEOUT,
                # A batch is a few tokens of HTML: compressing each frame costs CPU on the
                # hot path for little gain (daphne does not compress either).
                ws_per_message_deflate=False,
                timeout_keep_alive=KEEP_ALIVE,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
                # Behind a proxy, Django reads its headers itself, as under daphne:
                # TRUST_X_FORWARDED_PROTO for the scheme, TRUSTED_PROXY_COUNT for the
                # client's address (sign-in throttling). One place to configure, and the
                # same behaviour under either server.
                proxy_headers=False,
                # Django's LOGGING (LOG_FORMAT=json included) formats uvicorn's lines too.
                log_config=None,
                # A proxy in front keeps the access log; one line per request and socket
                # here would be work on the hot path (daphne logs none either).
                access_log=False,
                server_header=False,
            )
        finally:
            cleanup()

    def _start_recovery(self) -> None:
        """Settle turns whose process died (at start, then every so often): their replies
        are marked interrupted and their reservations settled; nothing is re-run.

        With several workers this runs once, in the parent, not in each worker. Settling is
        exactly once (a conditional UPDATE on the reservation), so a loop in every worker,
        or on every machine, would be safe too; but the parent outlives its workers: a
        worker that dies is replaced, and the parent settles the turns it left once they
        fall silent. One loop per machine is also one query every half minute, not N."""
        from django.db import close_old_connections

        from conversations.endings import recover_stale_turns

        def loop() -> None:
            while True:
                try:
                    recovered = recover_stale_turns()
                    if recovered:
                        self.stdout.write(f"Recovered {recovered} interrupted turn(s).")
                except Exception as exc:  # Recovery must never take the server down.
                    self.stderr.write(f"Recovery failed: {exc}")
                finally:
                    close_old_connections()
                forget_dead_workers()
                stop.wait(settings.RECOVERY_STALE_SECONDS / 2)

        stop = threading.Event()
        threading.Thread(target=loop, name="turn-recovery", daemon=True).start()

    def _alert_failed_checks(self) -> None:
        """Each start-up check that fails is an alert (banner and e-mail). The start is then
        refused (self.check), so the e-mail is tried at once, not left to the sender."""
        from ops import alerts

        try:
            if alerts.alert_failed_checks():
                alerts.send_due()
        except Exception as exc:  # The checks themselves still run and refuse the start.
            self.stderr.write(f"Alerting on the start-up checks failed: {exc}")

    def _start_alert_sender(self) -> None:
        """Alerts are e-mailed by a thread of this process (the parent, with several
        workers), every ALERT_SEND_INTERVAL_SECONDS: never from a reply's own path, so a
        slow mail server delays no reply, and an alert whose e-mail failed is tried again
        next round."""
        from ops import alerts

        alerts.start_sender(on_error=lambda exc: self.stderr.write(f"Alert e-mail failed: {exc}"))

    def _start_simulator(self) -> None:
        """The simulator runs here, in this process. With several workers it starts before
        them, and they find it through the environment they inherit: one simulator, so
        its 60 requests a minute are shared by every worker, as a real upstream's are."""
        from llm.simulator import SimulatorConfig, start_in_thread

        key = "sim-" + secrets.token_urlsafe(16)
        running = start_in_thread(
            SimulatorConfig(latency_ms=settings.SIMULATOR_LATENCY_MS, api_key=key)
        )
        settings.ANTHROPIC_BASE_URL = os.environ["ANTHROPIC_BASE_URL"] = running.url
        settings.ANTHROPIC_API_KEY = os.environ["ANTHROPIC_API_KEY"] = key
        self.stdout.write(
            f"ANTHROPIC_SIMULATOR is on: claude-4-6 is answered by the built-in simulator at "
            f"{running.url} ({settings.SIMULATOR_LATENCY_MS} ms per token)."
        )


def refuse_unsafe_workers(*, workers: int, server: str) -> None:
    """Refuse combinations that would serve, but wrongly."""
    if workers < 1:
        raise CommandError("--workers must be 1 or more.")
    if workers > 1 and server == "daphne":
        raise CommandError(
            "daphne serves one process: several workers are run by uvicorn "
            "(leave out --server, or use --server uvicorn)."
        )
    if workers > 1 and not settings.CHANNEL_LAYER_SHARED:
        raise CommandError(
            f"--workers {workers} needs REDIS_URL: with the in-memory channel layer a "
            "socket in one worker process would not see a reply generated in another. "
            "Set REDIS_URL (e.g. redis://127.0.0.1:6379/0), or serve one process."
        )


def prepare_metrics_directory(workers: int) -> Callable[[], None]:
    """With several workers, /metrics (answered by any one of them) must add up all of
    them: prometheus_client's multiprocess mode, where each process writes its figures to
    files in PROMETHEUS_MULTIPROC_DIR. The workers read the variable when they start, so
    it is set here, before them: a fresh temporary directory unless one is given, and a
    given one is emptied (figures of a previous run would be counted again). Returns what
    to do at exit."""
    if workers == 1:
        return lambda: None
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        return lambda: None
    created = tempfile.mkdtemp(prefix="chat-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = created
    return lambda: shutil.rmtree(created, ignore_errors=True)


_LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w+?_(\d+)\.db$")


def forget_dead_workers() -> None:
    """Drop the live gauges (active streams, queued requests) of worker processes that
    died: uvicorn replaces them, but their last figures would be added up forever."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory or not os.path.isdir(directory):
        return
    from prometheus_client import multiprocess

    for name in os.listdir(directory):
        match = _LIVE_GAUGE_FILE.match(name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)
        except PermissionError:
            pass  # alive, someone else's
