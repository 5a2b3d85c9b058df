"""Turn start: from a message sent over the websocket to its request leaving for the model.

    uv run python bench/turn_start.py [--history 1000] [--sends 50] [--server daphne]

Starts the production-like stack (_stack.py: DEBUG off, PostgreSQL, Redis, the claude-4-6
simulator in its own process) with one server process, signs one person up, gives them a
conversation of `--history` messages (questions and Markdown answers, stored as the app
stores them), then sends `--sends` messages into it one after another, as the page does.
For each, the time from just before the websocket send to the moment the simulator
received the Messages request (its `/stats` say when the latest one arrived): the socket,
authentication, saving the message and the empty reply, fitting the history, reserving the
budget, the limiter, building the request body and the HTTP request itself. Each reply is
one token with no latency, read to its end before the next send.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import sign_up
from _stack import ROOT, Stack, load_average

ENDED = re.compile(r'class="message message--assistant" data-status="([a-z_]+)"')
ANSWER = (
    "## About budgets\n\nYou asked a question. Here is a **careful** answer with a list:\n\n"
    "- one point\n- another point\n\n```python\ndef total(items):\n"
    "    return sum(len(item) for item in items)\n```\n\nAnd a closing sentence."
)

# Run in the app's environment: a conversation of N messages for the user; prints its id.
MAKE_HISTORY = """
import sys
from django.contrib.auth import get_user_model
from conversations.models import Conversation, Message, context_tokens
from conversations.rendering import render_markdown
size, answer = int(sys.argv[1]), sys.argv[2]
user = get_user_model().objects.get(username="bench")
conversation = Conversation.objects.create(owner=user, model="claude-4-6", title="Long")
html = render_markdown(answer)
rows = []
for n in range(size // 2):
    question = f"Question {n}"
    rows.append(Message(conversation=conversation, role="user", content=question,
                        context_tokens=context_tokens(question), client_id=f"h{n}"))
    rows.append(Message(conversation=conversation, role="assistant", content=answer,
                        content_html=html, context_tokens=context_tokens(answer),
                        model="claude-4-6", input_tokens=100, output_tokens=60,
                        cost_micros=220))
Message.objects.bulk_create(rows, batch_size=1000)
# Replies point at their question, as the turn service makes them.
messages = list(conversation.messages.order_by("id"))
for question, reply in zip(messages[0::2], messages[1::2]):
    reply.reply_to = question
Message.objects.bulk_update(messages[1::2], ["reply_to"], batch_size=1000)
print(conversation.pk)
"""


async def one_send(url: str, session: str, conversation: str, n: int) -> float:
    """Send one message; once its reply has ended, how long its request took to leave."""
    async with (
        websockets.connect(
            url.replace("http", "ws", 1) + "/ws/chat/",
            origin=url,
            additional_headers={"Cookie": f"sessionid={session}"},
            max_size=None,
        ) as ws,
        httpx.AsyncClient() as http,
    ):
        await ws.send(json.dumps({"type": "subscribe", "conversation": conversation}))
        await asyncio.sleep(0.05)  # as a page does on load, before anyone types
        payload = {
            "type": "send",
            "conversation": conversation,
            "client_id": f"t{n}",
            "message": f"Question {n} [sim:tokens=1] [sim:latency=0]",
        }
        sent = time.time()
        await ws.send(json.dumps(payload))
        async with asyncio.timeout(30):
            while True:
                frame = await ws.recv()
                status = ENDED.findall(frame)
                if "failed" in status:
                    raise RuntimeError("the reply failed")
                if "complete" in status:
                    break
        stats = (await http.get(STACK.sim_url + "/stats")).json()
        return stats["last_request_at"] - sent


STACK: Stack


def _exit_on_term() -> None:
    """A TERM (a timeout ending the run) exits through `finally`: the stack is cleaned up."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def main() -> None:
    global STACK
    _exit_on_term()
    parser = argparse.ArgumentParser()
    parser.add_argument("--history", type=int, default=1000)
    parser.add_argument("--sends", type=int, default=50)
    parser.add_argument("--server", default="daphne")
    parser.add_argument("--profile", action="store_true", help="py-spy the server (raw)")
    args = parser.parse_args()
    STACK = Stack(Path(tempfile.mkdtemp(prefix="bench-turn-")), latency_ms=0)
    try:
        STACK.start()
        env = STACK.fresh_env()
        [port] = STACK.start_servers(env, server=args.server, workers=1)
        url = f"http://127.0.0.1:{port}"
        session = sign_up(url)
        made = subprocess.run(
            [
                sys.executable, "-c",
                "import django; django.setup(); exec(" + repr(MAKE_HISTORY) + ")",
                str(args.history), ANSWER,
            ],
            cwd=ROOT, env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        conversation_id = made.stdout.strip().splitlines()[-1]
        asyncio.run(one_send(url, session, conversation_id, -1))  # warm: first client made
        spy = None
        if args.profile:
            spy = subprocess.Popen(
                [
                    "py-spy", "record", "-p", str(STACK.server_pids[0]), "-r", "500",
                    "--nonblocking", "-d", str(max(5, args.sends // 4)), "--threads",
                    "--format", "raw", "-o", str(STACK.workdir / "profile-turn-start.txt"),
                ],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        load = load_average()
        times = [
            asyncio.run(one_send(url, session, conversation_id, n)) * 1000
            for n in range(args.sends)
        ]
        if spy is not None:
            spy.wait(timeout=120)
        q = statistics.quantiles(times, n=100, method="inclusive")
        print(f"{args.server}, 1 process; history {args.history} messages; logs in {STACK.workdir}")
        print("| sends | p50 (ms) | p95 (ms) | p99 (ms) | min (ms) | load |")
        print("|---:|---:|---:|---:|---:|---:|")
        print(
            f"| {len(times)} | {q[49]:.1f} | {q[94]:.1f} | {q[98]:.1f} | {min(times):.1f} "
            f"| {load:.1f} |"
        )
    finally:
        STACK.close()


if __name__ == "__main__":
    main()
