"""Replies formatted while they stream (conversations/streaming_render.py): whatever the
batches, the page's copy is sanitised at every step, is a function of the text so far (so a
page that reloads or falls behind mid-stream gets the same), and ends equal to the one-shot
render the reply is stored with."""

from __future__ import annotations

import html
import itertools
import re
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it.common.utils import escapeHtml

from conversations import streaming_render
from conversations.rendering import render_markdown, render_part, sanitise
from conversations.streaming_render import EMPTY_TAIL, Ops, StreamRenderer, _copy, tail_text
from llm.simulator.replies import XSS_CORPUS, reply_text

from .streams import same_html

SAMPLES = {
    "reply": reply_text("Tell me about streams"),
    "reply with the XSS corpus": reply_text("show me [sim:html]", html=True),
    "xss corpus": XSS_CORPUS,
    "headings": (
        "# One\n\nSetext one\n===\n\nSetext two\n---\n\n## Two ##\n### Three\ntext\n\n---\n"
    ),
    "setext after a paragraph line": "para line one\nline two\n=====\n\nnext\n",
    "nested lists": (
        "- a\n- b\n  - b1\n  - b2\n\n    b2 goes on\n- c\n\n1. one\n2. two\n   1. two.one\n"
        "10. ten\n\n3) three\n4) four\n\n* star\n+ plus\n\n- [ ] task\n- [x] done\n"
    ),
    "a list that turns loose": "- a\n- b\n\n- c\n\nafter\n",
    "tables": (
        "| a | b | c |\n|:--|:-:|--:|\n| 1 | **2** | `3` |\n| 4 | 5 | 6 |\n\n"
        "x | y\n--|--\n1 | 2\n\ntext after\n"
    ),
    "fences": (
        "```python\ndef f(x):\n    return x < 1 and \"a\" & 'b'\n```\n\n~~~\nplain ~~~\n```\n~~~\n"
        "````md\n```\nnested\n```\n````\n\n```unknown-language\n<script>alert(1)</script>\n```\n"
        "   ```js\n   let a = 1;\n     let b = 2;\n   ```\n```\nno newline at the end\n```"
    ),
    "indented code": "text\n\n    code line\n\n    more code\n\nafter\n",
    "block quotes": "> quoted\nlazy line\n> > nested\n\n> - a list\n> - in a quote\n\nout\n",
    "emphasis across lines": "Some **bold\ntext** and *it\nalic* and `co\nde`.\n\n[link\ntext](https://a.example)\n",
    "references defined first": "[ref]: https://ok.example\n\nSee [the ref][ref] and [ref].\n",
    "crlf": "a\r\nb\r\n\r\n```\r\ncode\r\n```\r\n- x\r\n- y\r\n",
    "raw html": "<div onclick=alert(1)>hi</div>\n\n<script>\nalert(1)\n</script>\n\ntext\n",
}


def apply(page: tuple[str, str], ops: Ops) -> tuple[str, str]:
    """What the page shows after a batch: (finished part, open part)."""
    done, opened = page
    done += ops.done
    if ops.open is not None:
        opened = ops.open
    if ops.code:
        at = opened.rindex("</code>")
        opened = opened[:at] + ops.code + opened[at:]
    if ops.tail:
        assert opened.endswith('<div class="stream-tail">') or opened.endswith("</div>")
        at = opened.rindex("</div>")
        opened = opened[:at] + ops.tail + opened[at:]
    if ops.rows:
        at = opened.rindex("</tbody>")
        opened = opened[:at] + ops.rows + opened[at:]
    return done, opened


def assert_sanitised(ops: Ops) -> None:
    for part in (ops.done, ops.open or ""):
        assert sanitise(part) == part, part  # nothing the allowlist would take out
    assert escapeHtml(html.unescape(ops.code)) == ops.code, ops.code  # text only
    assert tail_text(html.unescape(ops.tail)) == ops.tail, ops.tail  # text only
    tail = f'<div class="stream-tail">{ops.tail}</div>'
    assert sanitise(tail) == tail
    rows = f"<table><tbody>{ops.rows}</tbody></table>"
    assert sanitise(rows) == rows, ops.rows


def text_of(markup: str) -> str:
    """The text a reader sees, but for spacing (Pygments trims blank lines around code)."""
    return "".join(html.unescape(re.sub(r"<[^>]*>", "", markup)).split())


def finish(renderer: StreamRenderer) -> tuple[str, bool]:
    """The reply's final HTML (the one-shot render), and whether the page's copy already
    shows exactly that (it does unless a link reference was defined after its use, or a
    large block shows its last lines as text)."""
    final = render_markdown(renderer.text)
    tail = renderer.text[renderer._done_end :]
    if renderer._head is not None:  # a large block: as shown (a table's rows may be all)
        shown = renderer.done_html + renderer.open_html.removesuffix(EMPTY_TAIL)
    elif tail.strip():
        shown = renderer.done_html + render_part(tail, _copy(renderer._env))
    else:
        shown = renderer.done_html
    return final, shown == final


def stream(text: str, cuts: list[int], *, check_states: bool = True) -> StreamRenderer:
    """Stream `text` in batches cut at `cuts`, checking every step; the renderer after."""
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(text))), len(text)]
    renderer, page = StreamRenderer(), ("", "")
    for start, end in itertools.pairwise(bounds):
        ops = renderer.feed(text[start:end])
        assert_sanitised(ops)
        page = apply(page, ops)
        if check_states:
            # What a page loaded now would show: the same, however the batches fell.
            assert same_html("".join(page)) == same_html(StreamRenderer(text[:end]).html)
    final, shown = finish(renderer)
    assert final == render_markdown(text)
    if renderer._head is not None:
        # A large open part shows its text after its last render point as text, until the
        # final swap (a table's rows may all be shown formatted: then it is the final).
        assert page[1].endswith("</div>")
        assert shown == (same_html("".join(page).removesuffix(EMPTY_TAIL)) == same_html(final))
        return renderer
    if "[ref]" not in text:  # no link reference defined after its use
        assert shown
    if same_html("".join(page)) != same_html(final):
        # Only a code block still open at the end (a closing fence with no line break
        # after it) is shown unhighlighted; the final swap colours it, the text is the same.
        assert renderer._fence is not None, (text, page)
        assert text_of("".join(page)) == text_of(final)
    return renderer


def test_every_sample_streamed_in_one_batch_ends_as_the_one_shot_render():
    for name, text in SAMPLES.items():
        renderer = stream(text, [])
        assert same_html(renderer.html) == same_html(render_markdown(text)) or text.endswith(
            "```"
        ), name


def test_every_sample_streamed_a_character_at_a_time():
    for text in SAMPLES.values():
        stream(text, list(range(len(text))), check_states=len(text) < 600)


def test_every_split_in_two_batches():
    for text in SAMPLES.values():
        if len(text) < 600:
            for cut in range(1, len(text)):
                stream(text, [cut])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(SAMPLES)),
    cuts=st.lists(st.floats(min_value=0, max_value=1), max_size=40),
)
def test_any_batches_give_the_same_page_and_the_one_shot_render(name: str, cuts: list[float]):
    text = SAMPLES[name]
    stream(text, [round(c * len(text)) for c in cuts])


# Pieces of Markdown that change what comes before or after them.
PIECES = [
    "# h\n", "text\n", "x\n", "===\n", "---\n", "* * *\n", "\n", "- a\n", "  - b\n", "+ z\n",
    "1. c\n", "2) y\n", "> q\n", "> - x\n", ">\n", "lazy\n", "| x | y |\n", "|---|--:|\n", "|a|\n",
    "```py\n", "```\n", "   ```\n", "~~~\n", "    code\n", "**b", "`c", "<b>", "*", " ", "  ",
    "   ", "\t", "\r\n", "[l](https://a.example)",
]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    text=st.lists(st.sampled_from(PIECES), max_size=30).map("".join),
    cuts=st.lists(st.integers(min_value=1, max_value=300), max_size=15),
)
def test_random_markdown_in_random_batches(text: str, cuts: list[int]):
    stream(text, cuts)


def test_a_code_fence_is_a_code_block_as_soon_as_it_opens():
    renderer = StreamRenderer("Here:\n\n")
    ops = renderer.feed("```py")
    assert ops.open is not None and '<pre class="highlight"><code class="language-py">' in ops.open
    assert "```" not in renderer.html


def test_an_open_code_block_grows_by_appended_escaped_text_only():
    renderer = StreamRenderer("Intro.\n\n```python\n")
    with (
        mock.patch.object(streaming_render, "render_part", side_effect=AssertionError),
        mock.patch.object(streaming_render, "parse_blocks", side_effect=AssertionError),
    ):
        for line in ["x = 1 < 2\n", "if x:\n", "    print('a & b')\n"] * 50:
            ops = renderer.feed(line)
            assert ops == Ops(code=escapeHtml(line))  # no re-render, nothing replaced
    ops = renderer.feed("```\n")  # closed: rendered once, highlighted
    assert ops.open == "" and '<span class="nb">print</span>' in ops.done


def test_the_batch_that_closes_a_code_block_is_known_before_it_is_rendered():
    # generation.flush renders that one off the event loop: it highlights the whole block.
    renderer = StreamRenderer("```python\nx = 1\n")
    assert not renderer.closes_a_fence("y = 2\n") and not renderer.closes_a_fence("``")
    renderer.feed("``")
    assert not renderer.closes_a_fence("`")  # the line is not complete yet
    assert renderer.closes_a_fence("`\n")
    assert "<span" in renderer.feed("`\n").done
    assert not renderer.closes_a_fence("```\n")  # no code block open: a new one opens


def test_a_line_that_may_close_the_fence_waits_for_its_end():
    renderer = StreamRenderer("```\ncode\n")
    assert renderer.feed("``").code == ""
    assert renderer.feed("`x\n").code == "```x\n"  # not a closing fence after all
    ops = renderer.feed("```")
    assert ops.code == ""
    ops = renderer.feed("\nafter")
    assert "<pre" in ops.done and ops.open == "<p>after</p>\n"


def test_finished_blocks_are_sent_once_and_the_open_one_is_replaced():
    renderer = StreamRenderer()
    assert renderer.feed("## Title") == Ops(open="<h2>Title</h2>\n")
    ops = renderer.feed("\n\nA para")
    assert ops == Ops(done="<h2>Title</h2>\n", open="<p>A para</p>\n")
    assert renderer.feed("graph").open == "<p>A paragraph</p>\n"
    ops = renderer.feed(" goes on\n")
    assert ops == Ops(open="<p>A paragraph goes on</p>\n")  # a === line would make it a heading
    ops = renderer.feed("\nNext")
    assert ops == Ops(done="<p>A paragraph goes on</p>\n", open="<p>Next</p>\n")
    assert renderer.feed("") == Ops()  # nothing new: nothing sent


def test_a_block_that_may_still_change_is_kept_open():
    renderer = StreamRenderer()
    renderer.feed("- one\n- two\n\n")
    assert renderer.done_html == ""  # the list may go on (and turn loose)
    renderer.feed("- three\n")
    assert renderer.done_html == "" and "<p>three</p>" in renderer.open_html
    renderer = StreamRenderer("A title\n")
    assert renderer.done_html == ""
    renderer.feed("===\n")  # a heading now, and finished: nothing can change it
    assert (renderer.done_html, renderer.open_html) == ("<h1>A title</h1>\n", "")
    renderer = StreamRenderer("| a | b |\n|---|---|\n| 1 | 2 |\n")
    renderer.feed("| 3 | 4 |\n")
    assert renderer.done_html == "" and renderer.open_html.count("<tr>") == 3


def test_a_link_reference_defined_after_its_use_is_right_in_the_final_render():
    text = "See [the docs][docs].\n\n[docs]: https://docs.example\n"
    renderer = StreamRenderer()
    for line in text.splitlines(keepends=True):
        renderer.feed(line)
    final, shown = finish(renderer)
    assert final == render_markdown(text) and 'href="https://docs.example"' in final
    assert not shown  # the page had it as text until the final swap


def test_the_xss_corpus_never_shows_anything_that_runs():
    text = reply_text("show me [sim:html]", html=True)
    renderer, seen = StreamRenderer(), []
    for start in range(0, len(text), 7):
        ops = renderer.feed(text[start : start + 7])
        seen += [ops.done, ops.open or "", ops.code]
    for part in seen:
        lowered = part.lower()
        assert "<script" not in lowered and "<img" not in lowered and "<iframe" not in lowered
        assert not re.search(r"<[^>]+\s(on\w+|hx-[\w:-]+|style|src)\s*=", lowered), part
        assert not re.search(r"<[^>]+=\s*[\"']?\s*(javascript|data|vbscript):", lowered), part


# Long content, whose open part is large (streaming_render.OPEN_LIMIT): rendered at render
# points only, its text after the last one shown as text in a tail, parsed from its end.
LONG = {
    "a long table": "| name | kind |\n|---|:-:|\n"
    + "".join(f"| row {n} **b** | `k{n}` |\n" for n in range(60))
    + "not a row? it is\n\nafter\n",
    "a long paragraph": "".join(f"line {n} with *em\nphasis* & `co{n}`\n" for n in range(40))
    + "===\n\nnext one\n"
    + "".join(f"more {n}\n" for n in range(40))
    + "x | y\n--|--\n1 | 2\n",
    "a long list": "".join(f"- item {n} with *words*\n" for n in range(40))
    + "  continued\nlazy\n\n- loose now\n1. other list\n"
    + "".join(f"{n}. ordered {n}\n" for n in range(2, 40))
    + "- - -\n",
    "a fence in a list item": "1. Install:\n\n   ```python\n"
    + "".join(f"   x_{n} = f({n}) < 2 and 'a' & \"b\"\n" for n in range(40))
    + "   ```\n2. Run:\n\n   ~~~\n   run it\n"
    + "".join(f"   step {n}\n" for n in range(30))
    + "   ~~~\n\n> quoted\n> ```\n"
    + "".join(f"> q{n}\n" for n in range(30))
    + "> ```\n",
}
LONG_PIECES = [
    *PIECES, "| a | b |\n", "|---|---|\n", "| 1 | 2 |\n", "1. x\n", "   ```\n", "   code\n",
    "> ```\n", "> c\n", "a long line of words\n", "  - nested\n", "===\n",
]  # fmt: skip


def test_long_samples_in_batches_of_a_line_with_a_small_limit():
    for limit in (64, 300):
        with mock.patch.object(streaming_render, "OPEN_LIMIT", limit):
            for text in LONG.values():
                cuts = [m.end() for m in re.finditer("\n", text)]
                stream(text, cuts)
                stream(text, [c - 3 for c in cuts])  # lines cut before their end


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(LONG)),
    cuts=st.lists(st.floats(min_value=0, max_value=1), max_size=40),
    limit=st.sampled_from([16, 64, 256, 2048]),
)
def test_long_content_in_any_batches(name: str, cuts: list[float], limit: int):
    text = LONG[name]
    with mock.patch.object(streaming_render, "OPEN_LIMIT", limit):
        stream(text, [round(c * len(text)) for c in cuts])


@settings(max_examples=150, deadline=None)
@given(
    text=st.lists(st.sampled_from(LONG_PIECES), max_size=60).map("".join),
    cuts=st.lists(st.integers(min_value=1, max_value=600), max_size=20),
    limit=st.sampled_from([8, 32, 128]),
)
def test_random_long_markdown_in_random_batches(text: str, cuts: list[int], limit: int):
    with mock.patch.object(streaming_render, "OPEN_LIMIT", limit):
        stream(text, cuts)


def work(text: str) -> tuple[list[int], list[int], list[Ops]]:
    """Feeding `text` a line a batch: per batch, the characters parsed and rendered."""
    parsed, rendered, sent = [0], [0], []
    real_parse, real_render = streaming_render.parse_blocks, streaming_render.render_part

    def parse(text: str):  # type: ignore[no-untyped-def]
        parsed[-1] += len(text)
        return real_parse(text)

    def render(text: str, env):  # type: ignore[no-untyped-def]
        rendered[-1] += len(text)
        return real_render(text, env)

    renderer = StreamRenderer()
    with (
        mock.patch.object(streaming_render, "parse_blocks", parse),
        mock.patch.object(streaming_render, "render_part", render),
    ):
        for line in text.splitlines(keepends=True):
            sent.append(renderer.feed(line))
            parsed.append(0)
            rendered.append(0)
    return parsed[:-1], rendered[:-1], sent


def test_a_long_table_costs_a_row_a_batch():
    head = "| name | kind |\n|---|:-:|\n"
    text = head + "".join(f"| row {n} **b** | `k{n}` |\n" for n in range(400))
    parsed, rendered, sent = work(text)
    large = [n for n, line in enumerate(text.splitlines()) if n > 150]  # well past 2 KB
    for n in large:
        assert parsed[n] <= 2 * len(head) + 60 and rendered[n] <= len(head) + 30, n
        assert sent[n].open is None and sent[n].rows.count("<tr>") == 1
        assert len(sent[n].rows) < 200  # the frame: the row


def test_a_long_paragraph_or_list_is_rendered_in_o_of_its_length_in_all():
    paragraph = "".join(f"line {n} with *some* `code` and words\n" for n in range(400))
    items = "".join(f"- item {n} with *some* words\n" for n in range(400))
    for text in (paragraph, items):
        parsed, rendered, sent = work(text)
        # Past the limit (2 KB, some 60 lines), render points a quarter apart.
        assert sum(rendered[60:]) < 6 * len(text)
        assert max(parsed[100:]) < 200  # its end only: a line or the last item, and the new
        frames = sum(len(ops.open or "") + len(ops.tail) for ops in sent[60:])
        assert frames < 8 * len(render_markdown(text))
        # Most batches only append their line as text.
        assert sum(ops.open is None for ops in sent) > 300
