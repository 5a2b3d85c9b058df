"""Markdown is rendered on the server, and nothing from the model or the user runs."""

from __future__ import annotations

import re

from conversations.rendering import render_markdown
from llm.simulator.replies import reply_text


def test_it_renders_headings_lists_and_highlighted_code():
    html = render_markdown("## Title\n\n- one\n- **two**\n\n```python\ndef f():\n    pass\n```")
    assert "<h2>Title</h2>" in html
    assert "<li><strong>two</strong></li>" in html
    assert 'class="language-python"' in html
    assert '<span class="k">def</span>' in html


def test_raw_html_shows_as_text():
    html = render_markdown("<b>bold</b> <script>alert(1)</script>")
    assert "<script" not in html and "&lt;script&gt;" in html
    assert "<b>" not in html


def test_the_xss_corpus_leaves_nothing_that_runs():
    html = render_markdown(reply_text("show me [sim:html]", html=True))
    lowered = html.lower()
    assert "<script" not in lowered and "<iframe" not in lowered and "<svg" not in lowered
    assert "<img" not in lowered
    assert not re.search(r"<[^>]+\son\w+\s*=", lowered), "no event-handler attributes"
    assert not re.search(r"<[^>]+\shx-", lowered), "no htmx attributes"
    assert 'href="javascript:' not in lowered
    assert 'href="data:' not in lowered and 'href="vbscript:' not in lowered


def test_images_become_links_so_nothing_outside_is_fetched():
    html = render_markdown("![pixel](https://evil.example/p.png)")
    assert "<img" not in html
    assert (
        '<a href="https://evil.example/p.png" rel="noopener noreferrer nofollow">pixel</a>' in html
    )


def test_unicode_round_trips():
    text = "مرحبا بالعالم — 你好，世界 — 👋🏽"
    assert text in render_markdown(text)
