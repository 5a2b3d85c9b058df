"""Local model: tokens per second and time to first token, through the app and direct.

    uv run python bench/local_throughput.py [--runs 7] [--max-tokens 256]

Starts `manage.py serve` (the built-in SmolLM2, greedy decoding so every run generates the
same tokens) on a fresh SQLite file, signs up, and sends the same prompt over the websocket
as the page does, timing the frames; then runs llama-cpp-python directly on the same
prompt with the same sampling. Prints both, and the app's share of direct throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import websockets
from _common import free_port, sign_up

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PROMPT = "Write a long story about a dragon who learns to cook."


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def start_app(tmp: Path, max_tokens: int) -> tuple[subprocess.Popen[bytes], str, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "ANTHROPIC_"))}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp / 'bench.sqlite3'}",
        LOCAL_MODEL_TEMPERATURE="0",
        LOG_LEVEL="WARNING",
    )
    manage(env, "migrate", "-v0")
    manage(
        env,
        "shell",
        "-c",
        "from billing.models import CatalogModel; "
        f"CatalogModel.objects.filter(slug='smollm2-135m').update(max_output_tokens={max_tokens})",
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--no-migrate", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(url + "/accounts/login/", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    return proc, url, env


async def one_app_run(url: str, session: str) -> tuple[float, float, int]:
    """(time to first token, tokens per second after it, tokens) for one reply."""
    ws_url = url.replace("http", "ws", 1) + "/ws/chat/"
    async with websockets.connect(
        ws_url, origin=url, additional_headers={"Cookie": f"sessionid={session}"}
    ) as socket_:
        message = {"type": "send", "message": PROMPT, "client_id": uuid.uuid4().hex}
        sent = time.perf_counter()
        await socket_.send(__import__("json").dumps({**message, "conversation": ""}))
        first = None
        while True:
            frame = await socket_.recv()
            now = time.perf_counter()
            if first is None and "beforeend:#m-" in frame:
                first = now
            done = re.search(r'message--assistant" data-status="(complete|cut_off)"', frame)
            if done:
                tokens = int(re.search(r"(\d+) out", frame).group(1))
                assert first is not None
                return first - sent, (tokens - 1) / (now - first), tokens


class Direct:
    """llama-cpp-python called directly, with the same prompt and sampling as the app."""

    def __init__(self, max_tokens: int):
        from llm.base import ChatMessage, ChatRequest
        from llm.local import LocalConfig, LocalModel, bundled_model_path

        self.model = LocalModel(
            LocalConfig(model_path=bundled_model_path(), context_window=8192, temperature=0.0)
        )
        self.request = ChatRequest("smollm2-135m", [ChatMessage("user", PROMPT)], max_tokens)
        self.max_tokens = max_tokens

    def run(self) -> tuple[float, float, int]:
        import llama_cpp

        llama, config = self.model.llama(), self.model.config
        started = time.perf_counter()
        tokens = self.model.prompt_tokens(self.request)
        first, produced = None, 0
        for token in llama.generate(
            tokens,
            temp=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k,
            repeat_penalty=config.repeat_penalty,
            reset=True,
        ):
            if llama_cpp.llama_vocab_is_eog(llama._model.vocab, token):
                break
            llama.detokenize([token])
            produced += 1
            if first is None:
                first = time.perf_counter()
            if produced >= self.max_tokens:
                break
        end = time.perf_counter()
        assert first is not None
        return first - started, (produced - 1) / (end - first), produced


def summary(name: str, rows: list[tuple[float, float, int]]) -> tuple[float, float]:
    ttft = statistics.median(r[0] for r in rows) * 1000
    rate = statistics.median(r[1] for r in rows)
    tokens = sorted({r[2] for r in rows})
    print(f"| {name:<22} | {ttft:>9.0f} | {rate:>10.1f} | {tokens} |")
    return ttft, rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

    direct = Direct(args.max_tokens)
    direct.run()  # warm-up: loads the model
    app, direct_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, _env = start_app(Path(tmp), args.max_tokens)
        try:
            session = sign_up(url)
            asyncio.run(one_app_run(url, session))  # warm-up: loads the model
            # Interleaved, so a slow spell of the machine hits both paths alike.
            for _ in range(args.runs):
                app.append(asyncio.run(one_app_run(url, session)))
                direct_rows.append(direct.run())
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    print(
        f"\nSmolLM2-135M Q4_1, {os.cpu_count()} cores, greedy, "
        f"median of {args.runs} interleaved runs\n"
    )
    print("| path                   | TTFT (ms) | tokens/s   | tokens |")
    print("|------------------------|-----------|------------|--------|")
    app_ttft, app_rate = summary("through the app (ws)", app)
    direct_ttft, direct_rate = summary("llama-cpp-python direct", direct_rows)
    print(
        f"\napp / direct throughput: {app_rate / direct_rate:.1%}; "
        f"added time to first token: {app_ttft - direct_ttft:.0f} ms"
    )


if __name__ == "__main__":
    main()
