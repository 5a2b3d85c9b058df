"""Markdown is rendered on the server, and nothing from the model or the user runs."""

from __future__ import annotations

import re

from conversations.rendering import render_markdown
from llm.simulator.replies import reply_text

# Every tag the renderer may produce (from Markdown and Pygments; never from the text).
ALLOWED_TAGS = {
    "a", "blockquote", "br", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5", "h6",
    "hr", "input", "li", "ol", "p", "pre", "s", "span", "strong", "table", "tbody", "td",
    "th", "thead", "tr", "ul",
}  # fmt: skip


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
    # In any attribute of any tag (the corpus's own text, shown escaped, says these too).
    assert not re.search(r"<[^>]+=\s*[\"']?\s*(javascript|data|vbscript):", lowered), "script URLs"
    tags = set(re.findall(r"<([a-z0-9]+)", lowered))
    assert tags <= ALLOWED_TAGS, tags - ALLOWED_TAGS


def test_links_need_a_full_address_of_an_allowed_scheme():
    html = render_markdown(
        "[a](https://ok.example/p) [b](/accounts/logout/) [c](jav&#x09;ascript:alert(1))"
        " [d](mailto:a@b.example) [e](#top)"
    )
    assert re.findall(r'href="([^"]*)"', html) == ["https://ok.example/p", "mailto:a@b.example"]


def test_table_alignment_is_a_class_not_an_inline_style():
    # The Content Security Policy (style-src 'self') refuses inline styles.
    html = render_markdown("| a | b | c |\n|:-|:-:|-:|\n| 1 | 2 | 3 |")
    assert "style=" not in html
    assert '<th class="align-left">a</th>' in html
    assert '<td class="align-center">2</td>' in html
    assert '<td class="align-right">3</td>' in html


def test_images_become_links_so_nothing_outside_is_fetched():
    html = render_markdown("![pixel](https://evil.example/p.png)")
    assert "<img" not in html
    assert (
        '<a href="https://evil.example/p.png" rel="noopener noreferrer nofollow">pixel</a>' in html
    )


def test_unicode_round_trips():
    text = "مرحبا بالعالم — 你好，世界 — 👋🏽"
    assert text in render_markdown(text)
