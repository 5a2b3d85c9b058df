"""Many streams at once: what the app adds to each batch on its way to the page.

    uv run python bench/streams.py [--clients 100,250,500] [--tokens 40] [--latency-ms 200]

Starts the claude-4-6 simulator (200 ms a token, no rate limit) and `manage.py serve`
(one daphne process, SQLite, in-memory channel layer) on loopback, signs one person up,
then for each N opens N websockets, as the page does, and sends a message on each at once.
The simulator stamps every token with the moment it sent it (`[sim:stamp]`), so each
client measures, for every batch it receives, the time since its newest token left the
simulator: the server-added latency (HTTP from the simulator, parsing, batching, the
database-free hot path, the socket). Prints p50/p95/p99 of that per batch and for the
first batch, batches per second, and the app process's CPU time and memory per stream.
The clients run in this process and share the machine with the app: on two cores they take
a good part of one, which is counted in the figures, not subtracted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import websockets
from _common import free_port, sign_up

ROOT = Path(__file__).resolve().parent.parent
STAMP = re.compile(r"⟦(\d+\.\d+)⟧")
DONE = 'message--assistant" data-status="complete"'
KEY = "bench-key"


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


async def one_stream(url: str, session: str, n: int, tokens: int, go: asyncio.Event) -> dict:
    added: list[float] = []
    first: float | None = None
    async with websockets.connect(
        url.replace("http", "ws", 1) + "/ws/chat/",
        origin=url,
        additional_headers={"Cookie": f"sessionid={session}"},
        max_size=None,
    ) as ws:
        await go.wait()
        await ws.send(
            json.dumps(
                {
                    "type": "send",
                    "conversation": "",
                    "client_id": f"b{n}",
                    "message": f"Stream {n} [sim:tokens={tokens}] [sim:stamp]",
                }
            )
        )
        while True:
            frame = await ws.recv()
            now = time.time()
            stamps = STAMP.findall(frame) if "beforeend:#m-" in frame else []
            if stamps:
                latency = now - max(float(s) for s in stamps)
                added.append(latency)
                if first is None:
                    first = latency
            if DONE in frame:
                break
    return {"added": added, "first": first}


async def run(url: str, session: str, clients: int, tokens: int, pid: int) -> dict:
    go = asyncio.Event()
    tasks = [asyncio.create_task(one_stream(url, session, n, tokens, go)) for n in range(clients)]
    await asyncio.sleep(1.0 + clients / 200)  # every socket open first
    cpu_before, started = cpu_seconds(pid), time.monotonic()
    go.set()
    results = await asyncio.gather(*tasks)
    took = time.monotonic() - started
    cpu = cpu_seconds(pid) - cpu_before
    added = sorted(x for r in results for x in r["added"])
    firsts = sorted(r["first"] for r in results if r["first"] is not None)
    q = statistics.quantiles(added, n=100, method="inclusive")
    return {
        "clients": clients,
        "batches": len(added),
        "p50": q[49] * 1000,
        "p95": q[94] * 1000,
        "p99": q[98] * 1000,
        "first_p50": statistics.median(firsts) * 1000,
        "rate": len(added) / took,
        "cpu_ms_per_stream": cpu / clients * 1000,
        "cpu_share": cpu / took,
        "rss_mb": rss_mb(pid),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", default="100,250,500")
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--latency-ms", type=float, default=200)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    sim_port, app_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "REDIS_URL"}}
    simulator = subprocess.Popen(
        [
            sys.executable, "manage.py", "simulator", "--port", str(sim_port),
            "--latency-ms", str(args.latency_ms), "--rpm", "100000000", "--api-key", KEY,
            "--daily-limit-usd", "100000",
        ],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    env.update(
        DATABASE_URL=f"sqlite:///{workdir / 'bench.sqlite3'}",
        LLM_PROVIDER="anthropic",
        LLM_MODEL="claude-4-6",
        ANTHROPIC_BASE_URL=f"http://127.0.0.1:{sim_port}",
        ANTHROPIC_API_KEY=KEY,
        UPSTREAM_RPM="100000000",
        USER_RPM="1000000",
        USER_MAX_ACTIVE_REPLIES="1000000",
        USER_DAILY_CAP_USD="100",
        LOG_LEVEL="WARNING",
    )
    app = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(app_port)],
        cwd=ROOT, env=env, stdout=(workdir / "serve.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(sim_port, simulator)
        wait_for(app_port, app)
        url = f"http://127.0.0.1:{app_port}"
        session = sign_up(url)
        print(f"daphne, 1 process; {args.tokens} tokens a reply at {args.latency_ms:g} ms each")
        print(
            "| streams | batches | added p50 (ms) | p95 | p99 | first batch p50 (ms) "
            "| batches/s | app CPU ms/stream | app CPU share | app RSS (MB) |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for clients in [int(c) for c in args.clients.split(",")]:
            r = asyncio.run(run(url, session, clients, args.tokens, app.pid))
            print(
                f"| {r['clients']} | {r['batches']} | {r['p50']:.1f} | {r['p95']:.1f} "
                f"| {r['p99']:.1f} | {r['first_p50']:.1f} | {r['rate']:.0f} "
                f"| {r['cpu_ms_per_stream']:.0f} | {r['cpu_share']:.0%} | {r['rss_mb']:.0f} |"
            )
    finally:
        for proc in (app, simulator):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
