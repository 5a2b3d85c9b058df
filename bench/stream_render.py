"""The streaming renderer's cost per batch: a long code block against prose.

    uv run python bench/stream_render.py [--tokens 4096] [--tokens-per-batch 1,4] [--runs 3]

Streams four replies of `--tokens` tokens (the simulator's tokenizer) through what the
server does for each batch of a reply being written (conversations/streaming_render.py:
`StreamRenderer.feed`, then `frames.batch`): one Python code block; prose (paragraphs of
about 80 tokens); the simulator's mixed reply (a heading, a paragraph, a list, code, then
paragraphs); and one long list. A batch is `--tokens-per-batch` tokens: 1 is the model
card's 200 ms a token with the app's 50 ms batches, the worst case (the most batches); 4
is a faster model. Then four blocks that grow large, a line a batch: a 400-row table, a
400-line paragraph, a 400-item list, a 300-line code fence inside a list item. Prints,
per reply, the median and 99th percentile µs per batch, the µs of its slowest batch and
of its slowest on the event loop (the app feeds in a thread the batches
`StreamRenderer.heavy` names: one that closes a code block, or completes a line of a
large block), the total ms for the whole reply, the KB of batch frames sent, the one-shot
render of the whole reply (what the reply is stored with), and whether the streamed
result equals that render (else why: a code block still open, or a large block's last
lines still shown as text: the final swap formats them).
The code block must cost no more per batch than prose: its batches append escaped text.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def replies(tokens: int) -> dict[str, list[str]]:
    """Each reply as its tokens, exactly `tokens` of them."""
    from llm.simulator.replies import reply_text, tokenize

    line = "    total = sum(len(item) for item in items if item and not item.startswith('#'))\n"
    code = "```python\ndef total(items):\n" + line * (tokens // 20 + 1)
    words = reply_text("Tell me about latency", tokens=tokens)
    prose_words = [t for t in tokenize(words) if t.strip() and t.strip()[0].isalpha()]
    prose = ""
    for n, word in enumerate(prose_words * (tokens // len(prose_words) + 2)):
        prose += word + (".\n\n" if n % 80 == 79 else "")
    items = "".join(f"- {' '.join(prose_words[n % 50 : n % 50 + 12])}\n" for n in range(tokens))
    closing = tokenize("\n```\n")
    return {
        "one code block": tokenize(code)[: tokens - len(closing)] + closing,
        "prose": tokenize(prose)[:tokens],
        "mixed (simulator)": tokenize(reply_text("Tell me about latency", tokens=tokens)),
        "one long list": tokenize(items)[:tokens],
    }


def by_line() -> dict[str, list[str]]:
    """Content the review found unbounded, one line a batch (400 batches, 300 for the fence)."""
    table = "| name | kind | note |\n|---|:-:|--:|\n" + "".join(
        f"| row {n} **bold** | `k{n}` | some *text* in cell {n} |\n" for n in range(398)
    )
    paragraph = "".join(
        f"Line {n} of one paragraph, with *emphasis* and `code` here and there.\n"
        for n in range(400)
    )
    items = "".join(f"- item {n} of a long list, with *some* words\n" for n in range(400))
    nested = (
        "1. Install:\n\n   ```python\n"
        + "".join(
            f"   total_{n} = sum(len(x) for x in items if x and not x.startswith('#'))\n"
            for n in range(297)
        )
        + "   ```\n"
    )
    return {
        "400-row table": table.splitlines(keepends=True),
        "400-line paragraph": paragraph.splitlines(keepends=True),
        "400-item list": items.splitlines(keepends=True),
        "300-line fence in a list item": nested.splitlines(keepends=True),
    }


def stream(tokens: list[str], per_batch: int) -> tuple[list[float], list[bool], str]:
    """µs per batch, whether each ran off the event loop (it closed a code block: the app
    renders that one in a thread), and the page's HTML at the end."""
    from conversations import frames
    from conversations.streaming_render import StreamRenderer

    renderer, costs, off_loop, size = StreamRenderer(), [], [], 0
    done, opened = "", ""
    for seq, start in enumerate(range(0, len(tokens), per_batch), start=1):
        text = "".join(tokens[start : start + per_batch])
        off_loop.append(renderer.heavy(text))
        began = time.perf_counter()
        ops = renderer.feed(text)
        size += len(frames.batch(1, seq, ops))
        costs.append((time.perf_counter() - began) * 1e6)
        done += ops.done
        if ops.open is not None:
            opened = ops.open
        if ops.code:
            at = opened.rindex("</code>")
            opened = opened[:at] + ops.code + opened[at:]
        if ops.tail:
            at = opened.rindex("</div>")
            opened = opened[:at] + ops.tail + opened[at:]
        if ops.rows:
            at = opened.rindex("</tbody>")
            opened = opened[:at] + ops.rows + opened[at:]
    return costs, off_loop, done + opened, size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--tokens-per-batch", default="1,4")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    django.setup()
    from conversations.rendering import _highlighted, render_markdown
    from conversations.streaming_render import EMPTY_TAIL, StreamRenderer

    print(
        "| reply | tokens/batch | batches | p50 µs/batch | p99 µs/batch | max µs "
        "| max on the loop µs | total ms | frames KB | one-shot render ms | streamed = one-shot |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
    cases = [
        (str(per_batch), per_batch, name, tokens)
        for per_batch in [int(n) for n in args.tokens_per_batch.split(",")]
        for name, tokens in replies(args.tokens).items()
    ] + [("1 line", 1, name, lines) for name, lines in by_line().items()]
    for label, per_batch, name, tokens in cases:
        costs: list[float] = []
        for _ in range(args.runs):  # the best of the runs, batch by batch
            _highlighted.cache_clear()  # each run highlights its code as the first would
            run, off_loop, page, size = stream(tokens, per_batch)
            costs = run if not costs else [min(a, b) for a, b in zip(costs, run, strict=True)]
        text = "".join(tokens)
        _highlighted.cache_clear()
        began = time.perf_counter()
        final = render_markdown(text)
        one_shot = (time.perf_counter() - began) * 1000
        # A code block still open at the end shows unhighlighted until the final swap, a
        # large block's text after its last render point as text.
        left = StreamRenderer(text)
        same = "open code block" if left._fence is not None else "tail" if left._head else "NO"
        p99 = statistics.quantiles(costs, n=100)[98]
        on_loop = max((c for c, off in zip(costs, off_loop, strict=True) if not off), default=0)
        print(
            f"| {name} | {label} | {len(costs)} | {statistics.median(costs):.0f} "
            f"| {p99:.0f} | {max(costs):.0f} | {on_loop:.0f} | {sum(costs) / 1000:.1f} "
            f"| {size / 1000:.0f} | {one_shot:.1f} "
            f"| {'yes' if page.removesuffix(EMPTY_TAIL) == final else same} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
