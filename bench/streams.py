"""Many streams at once: what the app adds to each batch on its way to the page.

    uv run python bench/streams.py [--clients 100,250,500,1000] [--workers 1,2]
        [--servers daphne,uvicorn] [--tokens 150] [--ramp SECONDS] [--client-procs 2]

For each server (daphne, uvicorn) and number of worker processes (1, 2), starts a
production-like stack on loopback (_stack.py: DEBUG off, PostgreSQL with a throwaway
database, Redis, the claude-4-6 simulator at 200 ms a token in its own process), signs a few
people up, and for each N opens N websockets as the page does, then sends a message on each
(spread evenly over `--ramp` seconds: by default 25 sends a second per worker, as 500
streams of 20 s each keep starting) asking for `--tokens` tokens (30 s) with `[sim:stamp]`.
With two workers there are two server processes on two ports, and the clients alternate
between them (the load balancer's job).

The clients run in `--client-procs` processes of their own. Each measures, for every batch
it receives, the time since the newest token in it left the simulator (the simulator stamps
each token with its emission time): the server-added latency (HTTP from the simulator,
parsing, batching, the replay log, the socket). It also measures time to first token minus
the model's own latency (the turn start, the upstream request, the first batch), and checks
its stream: sequence numbers 1, 2, 3... with no gap and no repeat, and the words of the
formatted text it built from the batches (finished blocks appended, the open block
replaced, code appended) equal to the words the simulator sent. "Steady" figures count
only the batches received while every stream was open and streaming (after the last one's
first batch, before the first one's last): N streams at once, no turn starting or ending.

Everything (app, simulator, Redis, PostgreSQL, clients) shares the machine's cores, which
is counted in the figures, not subtracted.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from conversations import dom  # noqa: E402  (found through the path set above)

BATCH = dom.parser(dom.BATCH)
WORD = re.compile(r"\w+")


def apply_batch(page: dict[str, str], frame: str, reply: str) -> None:
    """Apply a batch frame to the page's copy of a reply, as the page does: finished blocks
    appended, the open block replaced, an open code block's text appended."""
    marks = dom.batch_markers(reply)
    rest = frame[BATCH.match(frame).end() :]  # type: ignore[union-attr]
    rest, _, code = rest.partition(marks.code)
    done, found, opened = rest.partition(marks.open)
    page["done"] += done.removesuffix("</div>")
    if found:
        page["open"] = opened.removesuffix("</div>")
    if code:
        at = page["open"].rindex("</code>")
        page["open"] = page["open"][:at] + code.removesuffix("</div>") + page["open"][at:]


def words(html_text: str) -> list[str]:
    """The words of some HTML, as a reader sees them."""
    return WORD.findall(html.unescape(re.sub(r"<[^>]*>", " ", html_text)))


STAMP = re.compile(r"⟦(\d+\.\d+)⟧")
ENDED = re.compile(r'class="message message--assistant" data-status="([a-z_]+)"')


# --- the clients (run in their own processes) -------------------------------------------
async def one_stream(
    url: str, session: str, n: int, tokens: int, send_at: float, limit: float
) -> dict[str, Any]:
    import websockets

    from llm.simulator.replies import reply_text

    message = f"Stream {n} [sim:tokens={tokens}] [sim:stamp]"
    result: dict[str, Any] = {"added": [], "at": [], "ttft": None, "error": ""}
    seqs: list[int] = []
    page = {"done": "", "open": ""}
    try:
        async with websockets.connect(
            url.replace("http", "ws", 1) + "/ws/chat/",
            origin=url,
            additional_headers={"Cookie": f"sessionid={session}"},
            max_size=None,
            open_timeout=60,
        ) as ws:
            result["connected"] = True
            await asyncio.sleep(max(0.0, send_at - time.time()))
            sent = time.time()
            payload = {"type": "send", "conversation": "", "client_id": f"b{n}", "message": message}
            await ws.send(json.dumps(payload))
            status = ""
            async with asyncio.timeout(limit):
                while not status:
                    frame = await ws.recv()
                    now = time.time()
                    if match := BATCH.match(frame):
                        reply, seq = match["id"], match["seq"]
                        stamps = STAMP.findall(frame)
                        if stamps:
                            result["added"].append(now - max(float(s) for s in stamps))
                            result["at"].append(now)
                            if result["ttft"] is None:
                                result["ttft"] = now - sent
                        seqs.append(int(seq))
                        apply_batch(page, frame, reply)
                    for found in ENDED.findall(frame):
                        if found not in {"pending", "streaming"}:
                            status = found
        expected = reply_text(message, tokens=tokens)
        received = words(STAMP.sub("", html.unescape(page["done"] + page["open"])))
        if status != "complete":
            result["error"] = f"ended {status}"
        elif seqs != list(range(1, len(seqs) + 1)):
            repeats = len(seqs) - len(set(seqs))
            result["error"] = f"sequence {'repeats' if repeats else 'gap'}: {seqs[:3]}..."
        elif received != words(expected):
            result["error"] = f"text differs: {len(received)} of {len(words(expected))} words"
    except Exception as exc:  # one broken stream is a figure, not the end of the run
        result["error"] = f"{type(exc).__name__}: {exc}"[:200]
    return result


async def client_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Open this process's share of the sockets, say "ready", wait for "go", then send."""
    loop = asyncio.get_running_loop()
    go: asyncio.Future[float] = loop.create_future()

    def wait_for_go() -> None:
        line = sys.stdin.readline().split()
        loop.call_soon_threadsafe(go.set_result, float(line[1]))

    threading.Thread(target=wait_for_go, daemon=True).start()
    start: asyncio.Future[float] = loop.create_future()

    async def stream(index: int) -> dict[str, Any]:
        url = config["urls"][index % len(config["urls"])]
        session = config["sessions"][index % len(config["sessions"])]
        at = await asyncio.shield(start)
        send_at = at + config["ramp"] * index / config["total"]
        return await one_stream(url, session, index, config["tokens"], send_at, config["timeout"])

    tasks = [asyncio.create_task(stream(i)) for i in config["indexes"]]
    print("ready", flush=True)
    start.set_result(await go)
    cpu = time.process_time()
    results = await asyncio.gather(*tasks)
    return {"results": results, "cpu": time.process_time() - cpu}


def run_client_worker() -> None:
    import gc

    # The clients' own pauses would count as the server's: no collections while measuring
    # (a client process lives for one run and keeps every figure it measured).
    gc.disable()
    config = json.loads(sys.stdin.readline())
    if config.get("nice"):
        os.nice(config["nice"])
    print(json.dumps(asyncio.run(client_worker(config))), flush=True)


# --- the orchestrator ---------------------------------------------------------------------
def quantiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        value = values[0] if values else math.nan
        return value, value, value
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49], q[94], q[98]


def measure(
    urls: list[str],
    sessions: list[str],
    clients: int,
    *,
    tokens: int,
    latency_ms: float,
    ramp: float,
    procs: int,
    pids: list[int],
    sim_pid: int,
    profile: Path | None = None,
    raw: Path | None = None,
    nice: int = 0,
) -> dict[str, Any]:
    from _stack import cpu_seconds, load_average, machine_busy, rss_mb

    timeout = ramp + tokens * latency_ms / 1000 * 3 + 60
    workers = []
    for p in range(procs):
        worker = subprocess.Popen(
            [sys.executable, __file__, "--client-worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        config = {
            "urls": urls,
            "sessions": sessions,
            "indexes": list(range(p, clients, procs)),
            "total": clients,
            "tokens": tokens,
            "ramp": ramp,
            "timeout": timeout,
            "nice": nice,
        }
        assert worker.stdin is not None and worker.stdout is not None
        worker.stdin.write(json.dumps(config) + "\n")
        worker.stdin.flush()
        workers.append(worker)
    for worker in workers:
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != "ready":
            raise RuntimeError("a client process failed to start")
    time.sleep(1.0 + clients / 250)  # let every socket open and settle
    load = load_average()
    rss_before = sum(rss_mb(pid) for pid in pids)
    peak = [rss_before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            peak.append(sum(rss_mb(pid) for pid in pids))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu_before = [cpu_seconds(pid) for pid in pids]
    sim_before = cpu_seconds(sim_pid)
    busy_before, total_before = machine_busy()
    started = time.time() + 0.2
    spies = []
    if profile is not None:  # py-spy on each server process, from the first send on
        for pid in pids:
            spies.append(
                subprocess.Popen(
                    [
                        "py-spy", "record", "-p", str(pid), "-r", "200", "--nonblocking",
                        "-d", str(round(ramp + tokens * latency_ms / 1000)), "--threads",
                        "--format", "raw", "-o", f"{profile}-{pid}.txt",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write(f"go {started}\n")
        worker.stdin.flush()
    results: list[dict[str, Any]] = []
    client_cpu = 0.0
    for worker in workers:
        assert worker.stdout is not None
        report = json.loads(worker.stdout.readline())
        results += report["results"]
        client_cpu += report["cpu"]
        worker.wait(timeout=30)
    cpu = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)]
    sim_cpu = cpu_seconds(sim_pid) - sim_before
    busy_after, total_after = machine_busy()
    took = time.time() - started
    for spy in spies:
        spy.wait(timeout=60)
    done.set()
    sampler.join()
    if raw is not None:  # every batch's latency and arrival, per stream, for a closer look
        raw.write_text(json.dumps([{"added": r["added"], "at": r["at"]} for r in results]))
    added = sorted(x for r in results for x in r["added"])
    ttfts = sorted(r["ttft"] - latency_ms / 1000 for r in results if r["ttft"] is not None)
    at = sorted(x for r in results for x in r["at"])
    end = at[-1] if at else started
    errors: dict[str, int] = {}
    for r in results:
        if r["error"]:
            kind = r["error"].split(":")[0]
            errors[kind] = errors.get(kind, 0) + 1
    # The busiest second: every stream open at once.
    buckets: dict[int, int] = {}
    for x in at:
        buckets[int(x - started)] = buckets.get(int(x - started), 0) + 1
    p50, p95, p99 = quantiles(added)
    t50, _t95, t99 = quantiles(ttfts)
    # Steady state: from the moment every stream has had its first batch to the moment the
    # first one ends, all N stream at once and no turn starts or ends.
    streaming = [r for r in results if r["at"]]
    steady_from = max((r["at"][0] for r in streaming), default=0.0)
    steady_to = min((r["at"][-1] for r in streaming), default=0.0)
    steady = sorted(
        x
        for r in streaming
        for x, t in zip(r["added"], r["at"], strict=True)
        if steady_from < t < steady_to
    )
    s50, _s95, s99 = quantiles(steady)
    return {
        "clients": clients,
        "batches": len(added),
        "p50": p50 * 1000,
        "p95": p95 * 1000,
        "p99": p99 * 1000,
        "max": (added[-1] if added else math.nan) * 1000,
        "steady": len(steady),
        "steady_seconds": max(0.0, steady_to - steady_from),
        "steady_p50": s50 * 1000,
        "steady_p99": s99 * 1000,
        "ttft_p50": t50 * 1000,
        "ttft_p99": t99 * 1000,
        "rate": len(added) / max(1e-9, end - started),
        "peak_rate": max(buckets.values()) if buckets else 0,
        "cpu_ms_per_stream": sum(cpu) / clients * 1000,
        "cpu_share": [c / took for c in cpu],
        "client_cpu_share": client_cpu / took,
        "sim_cpu_share": sim_cpu / took,
        "machine_busy": (busy_after - busy_before) / max(1e-9, total_after - total_before),
        "rss_mb": max(peak),
        "rss_kb_per_stream": (max(peak) - rss_before) * 1024 / clients,
        "ok": sum(1 for r in results if not r["error"]),
        "errors": errors,
        "load": load,
    }


def _exit_on_term() -> None:
    """A TERM (a timeout ending the run) exits through `finally`: the stack is cleaned up."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def main() -> None:
    if "--client-worker" in sys.argv:
        run_client_worker()
        return
    from _common import sign_up
    from _stack import Stack

    _exit_on_term()
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", default="100,250,500,1000")
    parser.add_argument("--workers", default="1,2", help="server processes, e.g. 1,2")
    parser.add_argument("--servers", default="daphne,uvicorn")
    parser.add_argument("--tokens", type=int, default=150, help="tokens a reply")
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument(
        "--ramp",
        type=float,
        default=0,
        help="seconds to spread the sends over (default: 25 sends a second per worker)",
    )
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--users", type=int, default=8, help="people the streams belong to")
    parser.add_argument(
        "--gc",
        default="",
        help="the app's garbage collector (bench_settings.py): off, freeze, freeze:50000",
    )
    parser.add_argument(
        "--client-nice", type=int, default=0, help="the clients' niceness change (-10: first)"
    )
    parser.add_argument("--uvicorn-ws", default="auto", help="uvicorn's --ws")
    parser.add_argument("--redis-db", type=int, default=13)
    parser.add_argument("--hold", type=float, default=0, help="seconds to wait before each N")
    parser.add_argument("--profile", action="store_true", help="py-spy the servers (raw)")
    parser.add_argument("--layer-pool", type=int, default=1000, help="bench_settings.py")
    args = parser.parse_args()

    if args.gc:
        os.environ["BENCH_GC"] = args.gc
    stack = Stack(
        Path(tempfile.mkdtemp(prefix="bench-streams-")),
        latency_ms=args.latency_ms,
        redis_db=args.redis_db,
        layer_pool=args.layer_pool,
    )
    print(
        f"{args.tokens} tokens a reply at {args.latency_ms:g} ms each, sends spread over "
        + (f"{args.ramp:g} s" if args.ramp else "25 a second per worker")
        + f", {args.client_procs} client processes, {args.users} people"
        + (f", app GC {args.gc}" if args.gc else "")
        + "; "
        f"logs in {stack.workdir}",
        flush=True,
    )
    print(
        "| server | workers | streams | ok | batches | added p50 (ms) | p95 | p99 | max "
        "| steady: batches (s) | p50 | p99 | TTFT added p50 | p99 | batches/s (peak) "
        "| app CPU ms/stream | app CPU | clients CPU | simulator CPU | machine busy "
        "| app RSS MB (KB/stream) | load |"
    )
    print("|---" + "|---:" * 21 + "|")
    try:
        stack.start()
        for server in args.servers.split(","):
            for workers in [int(w) for w in args.workers.split(",")]:
                for clients in [int(c) for c in args.clients.split(",")]:
                    # A fresh database and fresh processes for every figure.
                    env = stack.fresh_env()
                    ports = stack.start_servers(
                        env, server=server, workers=workers, uvicorn_ws=args.uvicorn_ws
                    )
                    urls = [f"http://127.0.0.1:{port}" for port in ports]
                    sessions = [sign_up(urls[0], f"bench{n}") for n in range(args.users)]
                    time.sleep(args.hold)
                    r = measure(
                        urls,
                        sessions,
                        clients,
                        tokens=args.tokens,
                        latency_ms=args.latency_ms,
                        ramp=args.ramp or clients / (25 * workers),
                        procs=args.client_procs,
                        pids=stack.server_pids,
                        sim_pid=stack.simulator.pid if stack.simulator else 0,
                        profile=(
                            stack.workdir / f"profile-{server}-{workers}-{clients}"
                            if args.profile
                            else None
                        ),
                        raw=stack.workdir / f"batches-{server}-{workers}-{clients}.json",
                        nice=args.client_nice,
                    )
                    shares = "+".join(f"{s:.0%}" for s in r["cpu_share"])
                    errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items())
                    print(
                        f"| {server} | {workers} | {r['clients']} | {r['ok']} | {r['batches']} "
                        f"| {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {r['max']:.0f} "
                        f"| {r['steady']} ({r['steady_seconds']:.1f}) | {r['steady_p50']:.1f} "
                        f"| {r['steady_p99']:.1f} | {r['ttft_p50']:.0f} | {r['ttft_p99']:.0f} "
                        f"| {r['rate']:.0f} ({r['peak_rate']}) | {r['cpu_ms_per_stream']:.0f} "
                        f"| {shares} | {r['client_cpu_share']:.0%} | {r['sim_cpu_share']:.0%} "
                        f"| {r['machine_busy']:.0%} "
                        f"| {r['rss_mb']:.0f} ({r['rss_kb_per_stream']:.0f}) "
                        f"| {r['load']:.1f} |" + (f" errors: {errors}" if errors else ""),
                        flush=True,
                    )
                    stack.stop_servers()
    finally:
        stack.close()


if __name__ == "__main__":
    main()
