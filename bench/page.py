"""Opening a long conversation: server time and HTML size, by conversation length.

    uv run python bench/page.py [--sizes 100,1000,10000] [--runs 30]

Makes a fresh SQLite database (migrated as `serve` does), one user and a conversation of
each size (alternating questions and Markdown answers with their rendered HTML, as the
app stores them), then times the conversation page through Django's full request path
(middleware, session, view, template) in this process, and the older-messages fragment
the page loads on scroll. Prints the median and 95th percentile server time and the HTML
size: both should stay flat as the conversation grows, since a page holds the newest 50.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ANSWER = (
    "## About budgets\n\nYou asked a question. Here is a **careful** answer with a list:\n\n"
    "- one point\n- another point\n\n```python\ndef total(items):\n"
    "    return sum(len(item) for item in items)\n```\n\nAnd a closing sentence."
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench-page-")
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir}/bench.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    from conversations.models import Conversation, Message, context_tokens
    from conversations.rendering import render_markdown

    user = get_user_model().objects.create_user("bench", password="bench-password-1")
    html = render_markdown(ANSWER)
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)

    print("| messages | page p50 (ms) | page p95 (ms) | page HTML (KB) | older p50 (ms) |")
    print("|---------:|--------------:|--------------:|---------------:|---------------:|")
    for size in [int(s) for s in args.sizes.split(",")]:
        conversation = Conversation.objects.create(owner=user, model="claude-4-6", title="Long")
        rows = []
        for n in range(size // 2):
            question = f"Question {n}"
            rows.append(
                Message(
                    conversation=conversation,
                    role="user",
                    content=question,
                    context_tokens=context_tokens(question),
                )
            )
            rows.append(
                Message(
                    conversation=conversation,
                    role="assistant",
                    content=ANSWER,
                    content_html=html,
                    context_tokens=context_tokens(ANSWER),
                    model="claude-4-6",
                    input_tokens=100,
                    output_tokens=60,
                    cost_micros=220,
                )
            )
        Message.objects.bulk_create(rows, batch_size=1000)  # as saved one by one
        url = conversation.get_absolute_url()
        client.get(url)  # warm: templates compiled, connection open
        page_times, size_kb = [], 0.0
        for _ in range(args.runs):
            started = time.perf_counter()
            response = client.get(url)
            page_times.append((time.perf_counter() - started) * 1000)
            size_kb = len(response.content) / 1024
            assert response.status_code == 200
        oldest_shown = int(response.content.decode().split("?before=")[1].split('"')[0])
        older_times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            client.get(f"{url}older/?before={oldest_shown}")
            older_times.append((time.perf_counter() - started) * 1000)
        p95 = statistics.quantiles(page_times, n=20)[18]
        print(
            f"| {size:>8,} | {statistics.median(page_times):13.1f} | {p95:13.1f} "
            f"| {size_kb:14.1f} | {statistics.median(older_times):14.1f} |"
        )


if __name__ == "__main__":
    main()
