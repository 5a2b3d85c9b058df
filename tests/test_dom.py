"""The page's element ids and the batch frame's markers have one source,
conversations/dom.py: the chat page carries exactly the ids it gives and hands chat.js its
patterns, and what frames.py writes reads back with its parsers."""

from __future__ import annotations

import json
import re

from django.test import Client

from conversations import dom, frames
from conversations.models import Conversation, Message
from conversations.streaming_render import Ops, StreamRenderer

from .streams import BATCH, ENDED, RESET, batch_parts

ID = re.compile(r'\sid="([^"]*)"')
PATTERNS = re.compile(r'<script id="dom-patterns" type="application/json">(.*?)</script>', re.S)


def a_conversation(owner) -> tuple[Conversation, Message, Message, Message]:  # type: ignore[no-untyped-def]
    """A settled turn, then a reply being written (its checkpoint at batch 3)."""
    conversation = Conversation.objects.create(owner=owner, model="claude-4-6", title="Ids")
    first = Message.objects.create(conversation=conversation, role="user", content="Hello")
    answered = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="Hi",
        content_html="<p>Hi</p>",
        reply_to=first,
        model="claude-4-6",
    )
    second = Message.objects.create(conversation=conversation, role="user", content="More")
    writing = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="# So far\n\nhalf a **sent",
        status=Message.Status.STREAMING,
        stream_seq=3,
        reply_to=second,
        model="claude-4-6",
    )
    return conversation, answered, second, writing


def test_the_chat_page_carries_the_ids_dom_gives_and_hands_them_to_chat_js(alice):
    conversation, answered, asked, writing = a_conversation(alice)
    client = Client()
    client.force_login(alice)
    page = client.get(conversation.get_absolute_url()).content.decode()

    prefix = dom.element_id("")  # what every message element's id starts with
    shown = {found for found in ID.findall(page) if found.startswith(prefix)}
    settled = [answered.reply_to_id, answered.pk, asked.pk]
    expected = {dom.element_id(pk) for pk in settled} | {
        dom.element_id(writing.pk, part) for part in dom.IDS
    }
    assert shown == expected
    # The reply being written: its text with its checkpoint's number, formatted so far.
    assert f'id="{dom.element_id(writing.pk, "text")}" data-seq="3"' in page
    assert frames.stream_parts(writing.pk, StreamRenderer(writing.content)) in page
    # The copy button finds the reply it copies by the same id.
    assert f'data-copy-target="#{dom.element_id(answered.pk)} .markdown"' in page
    # chat.js reads the same patterns, as data (never run: the policy allows no inline code).
    (given,) = PATTERNS.findall(page)
    assert json.loads(given) == dom.PATTERNS
    # Ended replies are read back by the tests' parser of the same id.
    ended = {int(match["id"]): match["status"] for match in ENDED.finditer(page)}
    assert ended == {answered.pk: "complete", writing.pk: "streaming"}


def test_the_parsers_read_back_every_frame_frames_writes():
    ops = Ops(done="<p>a</p>", open="<p>b</p>", code="c &lt;", rows="<tr><td>1</td></tr>", tail="t")
    frame = frames.batch(41, 7, ops)
    match = BATCH.match(frame)
    assert match is not None and (match["id"], match["seq"]) == ("41", "7")
    assert batch_parts(frame, 41) == (ops.done, ops.open, ops.code, ops.tail, ops.rows)
    # A batch that only appends: the open block stays.
    assert batch_parts(frames.batch(41, 8, Ops(done="<p>c</p>")), 41) == (
        "<p>c</p>", None, "", "", ""
    )  # fmt: skip
    # Another reply's batch is not this one's.
    assert BATCH.match(frames.batch(410, 1, ops))["id"] == "410"  # type: ignore[index]

    reset = RESET.match(frames.stream_reset(41, 9, "# Title\n\nsome *text"))
    assert reset is not None and (reset["id"], reset["seq"]) == ("41", "9")
    state = StreamRenderer("# Title\n\nsome *text")
    assert (reset["done"], reset["open"]) == (state.done_html, state.open_html)

    status = frames.reply_status(41, queued=0)
    assert status.startswith(f'<span id="{dom.element_id(41, "status")}" ')
    removed = frames.turn_started(removed=[40, 41])
    assert all(f'id="{dom.element_id(pk)}" hx-swap-oob="delete"' in removed for pk in (40, 41))


def test_a_parser_takes_the_pattern_as_it_is_and_each_placeholder_as_a_number():
    text = dom.parser(dom.TEXT)
    assert text.fullmatch(dom.element_id(12, "text"))["id"] == "12"  # type: ignore[index]
    for other in ("status", "done", "open", "message"):
        assert text.fullmatch(dom.element_id(12, other)) is None
    assert text.fullmatch(dom.TEXT) is None  # a placeholder is a number, not its name
    # A second {id} is the same number as the first.
    twice = dom.parser("<" + dom.TEXT + "><" + dom.DONE + ">")
    assert twice.fullmatch(f"<{dom.element_id(5, 'text')}><{dom.element_id(5, 'done')}>")
    assert not twice.fullmatch(f"<{dom.element_id(5, 'text')}><{dom.element_id(6, 'done')}>")
    # Characters special to regular expressions are matched as themselves.
    rows = dom.parser(dom.ROWS_APPENDED)
    assert rows.fullmatch(dom.batch_markers(3).rows)["id"] == "3"  # type: ignore[index]
    assert not rows.fullmatch(dom.batch_markers(3).rows.replace(" > ", " + "))
