"""A production-like stack on loopback for the benchmarks: PostgreSQL, Redis, the
claude-4-6 simulator in its own process, and the app's ASGI worker processes.

- The app runs with DEBUG off and the production settings, except what plain HTTP on
  127.0.0.1 needs (no HTTPS redirect, cookies not marked Secure).
- PostgreSQL (127.0.0.1:5432, user postgres, trust): a throwaway database for each stack,
  copied from a template migrated once per benchmark run; dropped at the end.
- Redis (127.0.0.1:6379): one database number (13 unless told), flushed at start and end.
- Workers: one server process per worker, each on its own port (a load balancer's job is
  left to the clients, which spread over the ports), so each process's CPU can be read.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SIM_KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"a process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listened on {port}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine_busy() -> tuple[float, float]:
    """Busy and total CPU time of the whole machine so far (seconds, all cores)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _pg(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Stack:
    """The simulator and a migrated template database; servers are started per setup."""

    workdir: Path
    latency_ms: float = 200.0
    redis_db: int = 13
    layer_pool: int = 1000  # bench_settings.py: the channel layer's Redis pool; 0: as set
    env: dict[str, str] = field(default_factory=dict)
    simulator: subprocess.Popen[bytes] | None = None
    sim_port: int = 0
    template: str = ""
    databases: list[str] = field(default_factory=list)
    servers: list[tuple[int, subprocess.Popen[bytes]]] = field(default_factory=list)

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:6379/{self.redis_db}"

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    def start(self) -> None:
        """Start the simulator; migrate a template database; collect the static files."""
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LLM_", "ANTHROPIC_", "DJANGO_", "REDIS_", "DATABASE_"))
        }
        self.sim_port = free_port()
        self.simulator = subprocess.Popen(
            [
                sys.executable, "manage.py", "simulator", "--port", str(self.sim_port),
                "--latency-ms", str(self.latency_ms), "--rpm", "100000000",
                "--burst", "100000000", "--api-key", SIM_KEY, "--daily-limit-usd", "1000000",
            ],
            # bench_settings, for its event-loop lag probe (BENCH_LOOP_LAG_FILE) if asked.
            cwd=ROOT,
            env={k: v for k, v in base.items() if k != "BENCH_GC"}
            | {"DJANGO_SETTINGS_MODULE": "bench.bench_settings"},
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "simulator.log").open("wb"),
        )  # fmt: skip
        self.template = f"bench_tpl_{os.getpid()}"
        _pg(f"DROP DATABASE IF EXISTS {self.template}")
        _pg(f"CREATE DATABASE {self.template}")
        self.env = base | {
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "ALLOWED_HOSTS": "127.0.0.1",
            # Plain HTTP on loopback: no redirect to HTTPS, cookies sent without TLS.
            "SECURE_SSL_REDIRECT": "false",
            "SESSION_COOKIE_SECURE": "false",
            "CSRF_COOKIE_SECURE": "false",
            "STATIC_ROOT": str(self.workdir / "static"),
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{self.template}",
            "REDIS_URL": self.redis_url,
            "LLM_PROVIDER": "anthropic",
            "LLM_MODEL": "claude-4-6",
            "ANTHROPIC_BASE_URL": self.sim_url,
            "ANTHROPIC_API_KEY": SIM_KEY,
            # The service's limits are not what is measured here.
            "UPSTREAM_RPM": "100000000",
            "USER_RPM": "1000000",
            "USER_MAX_ACTIVE_REPLIES": "1000000",
            "USER_DAILY_CAP_USD": "1000",
            "DAILY_CAP_USD": "100000",
            "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "bench.bench_settings",
            "BENCH_LAYER_POOL": str(self.layer_pool),
        }
        self.manage("migrate", "--noinput", "-v0")
        self.manage("collectstatic", "--noinput", "-v0")
        self.manage("check", "--deploy", "--fail-level", "ERROR")
        wait_for(self.sim_port, self.simulator)

    def manage(self, *args: str, env: dict[str, str] | None = None) -> None:
        subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env or self.env, check=True
        )

    def fresh_env(self) -> dict[str, str]:
        """A new throwaway database (a copy of the migrated template) and an empty Redis
        database: the environment for one setup's servers."""
        import redis

        name = f"bench_{os.getpid()}_{len(self.databases)}"
        _pg(f"DROP DATABASE IF EXISTS {name}")
        _pg(f"CREATE DATABASE {name} TEMPLATE {self.template}")
        self.databases.append(name)
        redis.Redis.from_url(self.redis_url).flushdb()
        return self.env | {"DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{name}"}

    def start_servers(
        self, env: dict[str, str], *, server: str, workers: int, uvicorn_ws: str = "auto"
    ) -> list[int]:
        """`workers` server processes of `server` (daphne or uvicorn), one port each."""
        ports = []
        for n in range(workers):
            port = free_port()
            if server == "daphne":
                command = [
                    sys.executable, "-m", "daphne",
                    # Twisted listens with a backlog of 50 unless told: too few for a burst.
                    "-e", f"tcp:port={port}:interface=127.0.0.1:backlog=4096",
                    "--ping-interval", "20", "--ping-timeout", "30",
                    "--websocket_connect_timeout", "10", "--application-close-timeout", "10",
                    "--verbosity", "0", "chatsite.asgi:application",
                ]  # fmt: skip
            elif server == "uvicorn":
                command = [
                    sys.executable, "-m", "uvicorn", "chatsite.asgi:application",
                    "--host", "127.0.0.1", "--port", str(port), "--lifespan", "off",
                    "--no-access-log", "--log-level", "warning", "--ws", uvicorn_ws,
                    "--ws-ping-interval", "20", "--ws-ping-timeout", "30",
                    "--timeout-graceful-shutdown", "5", "--backlog", "4096",
                ]  # fmt: skip
            else:
                raise ValueError(f"unknown server {server!r}")
            log = (self.workdir / f"{server}-{len(self.databases)}-{n}.log").open("wb")
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
            self.servers.append((port, proc))
            ports.append(port)
        for port, proc in self.servers:
            wait_for(port, proc)
        return ports

    @property
    def server_pids(self) -> list[int]:
        return [proc.pid for _port, proc in self.servers]

    def stop_servers(self) -> None:
        for _port, proc in self.servers:
            _stop(proc)
        self.servers.clear()

    def close(self) -> None:
        self.stop_servers()
        if self.simulator is not None:
            _stop(self.simulator)
        for name in [*self.databases, self.template]:
            try:
                _pg(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            except Exception as exc:  # leave the others to be dropped
                print(f"could not drop {name}: {exc}", file=sys.stderr)
        try:
            import redis

            redis.Redis.from_url(self.redis_url).flushdb()
        except Exception:
            pass
