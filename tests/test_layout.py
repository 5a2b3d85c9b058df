"""The chat page's frame, as the server renders it: the conversation list grouped by day,
the header naming the model people know, the Conversation menu and its dialogs (the
browser tests in test_browser_layout.py drive the same on screen)."""

from __future__ import annotations

import datetime
import html as entities
import json
import re
import zoneinfo

from channels.db import database_sync_to_async
from django.test import Client
from django.utils import timezone

from billing.models import CatalogModel
from conversations import frames
from conversations.models import Conversation
from conversations.views import conversation_groups

from .conftest import communicator, receive_until

DONE = 'message--assistant" data-status='


def client_for(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def aged(user, title: str, days: int) -> Conversation:  # type: ignore[no-untyped-def]
    """A conversation of `user` last active `days` days ago."""
    conversation = Conversation.objects.create(owner=user, model="claude-4-6", title=title)
    when = timezone.now() - datetime.timedelta(days=days)
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=when)
    return conversation


def groups_on(html: str) -> list[tuple[str, list[str]]]:
    """The list's groups as the page shows them: each heading and the titles under it."""
    found = []
    for section in re.findall(r'<section class="conversation-group".*?</section>', html, re.S):
        heading = re.search(r"<h2[^>]*>(.*?)</h2>", section, re.S)
        assert heading
        titles = re.findall(r'<li id="conv-[^"]+"><a [^>]*>(.*?)</a>', section, re.S)
        found.append((heading.group(1).strip(), [entities.unescape(t) for t in titles]))
    return found


def test_the_list_is_grouped_by_the_day_of_last_activity(alice):
    aged(alice, "Last month", 30)
    aged(alice, "Four days ago", 4)
    aged(alice, "Yesterday's", 1)
    aged(alice, "This morning", 0)
    aged(alice, "Eight days ago", 8)
    html = client_for(alice).get("/").content.decode()
    assert groups_on(html) == [
        ("Today", ["This morning"]),
        ("Yesterday", ["Yesterday's"]),
        ("Previous 7 days", ["Four days ago"]),
        ("Older", ["Eight days ago", "Last month"]),
    ]


def test_the_today_group_is_there_even_empty_for_a_new_chat_to_land_in(alice):
    aged(alice, "Old one", 20)
    html = client_for(alice).get("/").content.decode()
    assert groups_on(html) == [("Today", []), ("Older", ["Old one"])]
    assert 'id="conversation-group-today"' in html


def test_days_are_counted_in_the_active_time_zone(alice):
    late = Conversation.objects.create(owner=alice, model="claude-4-6", title="Late")
    evening = datetime.datetime(2026, 1, 1, 23, 30, tzinfo=datetime.UTC)
    Conversation.objects.filter(pk=late.pk).update(updated_at=evening)
    late.refresh_from_db()
    day = datetime.date(2026, 1, 2)
    assert [g.key for g in conversation_groups([late], today=day)] == ["today", "yesterday"]
    with timezone.override(zoneinfo.ZoneInfo("Asia/Tokyo")):  # already the 2nd there
        groups = conversation_groups([late], today=day)
    assert [(g.key, g.items) for g in groups] == [("today", [late])]


def test_truncated_titles_carry_their_full_text_as_a_tooltip(alice):
    title = "A very long title " * 8
    conversation = aged(alice, title.strip(), 0)
    html = client_for(alice).get(conversation.get_absolute_url()).content.decode()
    assert f'title="{title.strip()}" aria-current="page">{title.strip()}</a>' in html
    assert f'<h1 id="chat-title" title="{title.strip()}">' in html


def test_a_conversation_opened_over_the_socket_goes_to_the_top_of_today(alice):
    conversation = aged(alice, "Fresh", 0)
    frame = frames.conversation_opened(conversation)
    assert '<div hx-swap-oob="afterbegin:#conversation-group-today">' in frame
    assert f'<li id="conv-{conversation.pk}"><a href=' in frame
    assert '<span id="model-name" class="model-name" hx-swap-oob="true">Claude 4.6</span>' in frame


def test_the_header_names_the_model_by_its_display_name(alice):
    conversation = aged(alice, "Named", 0)
    html = client_for(alice).get(conversation.get_absolute_url()).content.decode()
    assert '<span id="model-name" class="model-name">Claude 4.6</span>' in html
    assert ">claude-4-6</span>" not in html


async def test_switching_the_model_renames_it_in_the_header_at_once(alice, alice_cookie):
    await database_sync_to_async(CatalogModel.objects.create)(
        slug="claude-4-6-preview",
        display_name="Claude 4.6 Preview",
        provider="anthropic",
        context_window=128_000,
        max_output_tokens=4096,
        input_price_per_1k_micros=1000,
        output_price_per_1k_micros=2000,
    )
    conversation = await database_sync_to_async(Conversation.objects.create)(
        owner=alice, model="claude-4-6-preview", title="Switching"
    )
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(
        text_data=json.dumps(
            {
                "type": "send",
                "message": "Hi [sim:tokens=4]",
                "client_id": "switch-1",
                "conversation": str(conversation.pk),
                "model": "claude-4-6",
            }
        )
    )
    received = await receive_until(comm, f'{DONE}"complete"')
    # The same model again: the header is not re-sent.
    await comm.send_to(
        text_data=json.dumps(
            {
                "type": "send",
                "message": "Again [sim:tokens=4]",
                "client_id": "switch-2",
                "conversation": str(conversation.pk),
                "model": "claude-4-6",
            }
        )
    )
    again = await receive_until(comm, f'{DONE}"complete"')
    await comm.disconnect()
    header = '<span id="model-name" class="model-name" hx-swap-oob="true">Claude 4.6</span>'
    assert header in received[0]
    assert not any("model-name" in frame for frame in again)


def test_the_menu_dialogs_open_from_a_link_without_javascript(alice):
    conversation = aged(alice, "Plain", 0)
    client = client_for(alice)
    page = client.get(conversation.get_absolute_url()).content.decode()
    assert re.search(r'<dialog id="rename-dialog"[^>]*aria-labelledby="[^"]+">', page)
    assert "open data-show-modal" not in page
    assert f'href="{conversation.get_absolute_url()}?dialog=rename"' in page
    renaming = client.get(f"{conversation.get_absolute_url()}?dialog=rename").content.decode()
    assert re.search(r'<dialog id="rename-dialog"[^>]* open data-show-modal>', renaming)
    assert 'action="/c/' in renaming and 'id="rename-input"' in renaming
    unknown = client.get(f"{conversation.get_absolute_url()}?dialog=nope").content.decode()
    assert " open data-show-modal" not in unknown


def test_settings_with_errors_come_back_in_their_open_dialog(alice):
    conversation = aged(alice, "Wrong", 0)
    response = client_for(alice).post(
        f"{conversation.get_absolute_url()}settings/", {"max_output_tokens": "99999"}
    )
    html = response.content.decode()
    assert re.search(r'<dialog id="settings-dialog"[^>]* open data-show-modal>', html)
    assert "Max output tokens goes from 1 to" in html


def test_every_action_on_a_message_has_an_icon_beside_its_word(alice):
    """Edit, Copy, Regenerate, Retry, Continue and Stop: an icon (decoration, hidden from
    screen readers) and the word that names the button."""
    from conversations.models import Message

    conversation = Conversation.objects.create(owner=alice, model="claude-4-6")
    question = Message.objects.create(conversation=conversation, role="user", content="Hi")
    answer = Message.objects.create(
        conversation=conversation, role="assistant", content="Hello", reply_to=question,
        status="complete", content_html="<p>Hello</p>", input_tokens=3, output_tokens=1,
    )  # fmt: skip
    failed = Message.objects.create(
        conversation=conversation, role="assistant", reply_to=question, status="failed",
        error_kind="server",
    )  # fmt: skip
    cut = Message.objects.create(
        conversation=conversation, role="assistant", content="Hel", reply_to=question,
        status="cut_off", content_html="<p>Hel</p>", input_tokens=3, output_tokens=1,
        model="claude-4-6",
    )  # fmt: skip
    writing = Message.objects.create(
        conversation=conversation, role="assistant", reply_to=question, status="streaming"
    )

    def button(html: str, word: str) -> str:
        found = re.search(
            rf"<(?:button|summary)[^>]*>\s*(<svg[^>]*>.*?</svg>)\s*<span[^>]*>{word}</span>",
            html,
            re.S,
        )
        assert found, f"no icon beside {word!r} in {html}"
        return found.group(1)

    for html, word in [
        (frames.render_message(question), "Edit"),
        (frames.render_message(answer), "Copy"),
        (frames.render_message(answer), "Regenerate"),
        (frames.render_message(failed), "Retry"),
        (frames.render_message(cut), "Continue"),
        (frames.render_message(writing), "Stop"),
    ]:
        assert 'aria-hidden="true"' in button(html, word)
