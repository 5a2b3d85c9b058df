"""Managing conversations, long ones, settings, regenerate, edit and export, over HTTP and
the websocket (the browser tests drive the same through the page)."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from billing.models import UsageRecord
from conversations import dom, turns
from conversations.models import Conversation, Message
from conversations.selectors import PAGE_MESSAGES, history_for

from .conftest import communicator, receive_until

DONE = 'message--assistant" data-status='
WORLD = "مرحبا بالعالم · 你好，世界 · こんにちは · 👋🏽🌍"


def client_for(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def conversation_with(user, *pairs: tuple[str, str], title: str = "") -> Conversation:  # type: ignore[no-untyped-def]
    conversation = Conversation.objects.create(owner=user, model="claude-4-6", title=title)
    for question, answer in pairs:
        asked = Message.objects.create(conversation=conversation, role="user", content=question)
        Message.objects.create(
            conversation=conversation,
            role="assistant",
            content=answer,
            content_html=f"<p>{answer}</p>",
            reply_to=asked,
            model="claude-4-6",
        )
    return conversation


def test_rename_archive_and_delete_with_confirmation(alice):
    conversation = conversation_with(alice, ("Hi", "Hello"), title="Old name")
    web = client_for(alice)
    url = conversation.get_absolute_url()

    assert web.post(f"{url}rename/", {"title": "  New   name "}).status_code == 302
    conversation.refresh_from_db()
    assert conversation.title == "New name"
    assert (
        "A conversation needs a name."
        in web.post(f"{url}rename/", {"title": " "}, follow=True).content.decode()
    )

    web.post(f"{url}archive/", {"archived": "1"})
    assert "New name" not in web.get("/").content.decode()  # not in the list
    archived = web.get("/conversations/?archived=1").content.decode()
    assert "New name" in archived
    web.post(f"{url}archive/", {"archived": "0"})
    assert "New name" in web.get("/").content.decode()

    page = web.get(f"{url}delete/").content.decode()
    assert "Delete this conversation?" in page  # asks first; nothing deleted yet
    assert Conversation.objects.filter(pk=conversation.pk).exists()
    assert web.post(f"{url}delete/").status_code == 302
    assert not Conversation.objects.filter(pk=conversation.pk).exists()


def test_search_finds_titles_and_message_text_of_my_conversations_only(alice, bob):
    conversation_with(alice, ("Tell me about otters", "Otters hold hands"), title="Animals")
    conversation_with(alice, ("Quarterly numbers", "Revenue grew"), title="Work")
    conversation_with(bob, ("Otters again", "Bob's otters"), title="Bob's otters")
    web = client_for(alice)
    page = web.get("/conversations/", {"q": "otter"}).content.decode()
    assert "Animals" in page and "Work" not in page and "Bob" not in page
    assert "Work" in web.get("/conversations/", {"q": "REVENUE"}).content.decode()
    assert "Nothing matches." in web.get("/conversations/", {"q": "zebra"}).content.decode()


def test_the_list_is_newest_first_and_paged(alice):
    for n in range(55):
        conversation_with(alice, title=f"Chat number {n:02d}")
    web = client_for(alice)
    first = web.get("/conversations/").content.decode()
    assert first.index("Chat number 54") < first.index("Chat number 10")
    assert "Chat number 04" not in first and "page=2" in first
    second = web.get("/conversations/", {"page": 2}, HTTP_HX_REQUEST="true").content.decode()
    assert "Chat number 04" in second and "Chat number 54" not in second
    assert "<html" not in second  # a fragment for htmx; the link works without it too


def test_a_long_conversation_opens_at_its_newest_messages(alice):
    conversation = conversation_with(alice, *[(f"Question {n}", f"Answer {n}") for n in range(60)])
    web = client_for(alice)
    page = web.get(conversation.get_absolute_url()).content.decode()
    assert page.count('class="message message--') == PAGE_MESSAGES
    assert "Answer 59" in page and "Answer 34" not in page and "Question 35" in page
    older = page.split('hx-get="')[1].split('"')[0].replace("&amp;", "&")
    fragment = web.get(older).content.decode()
    assert fragment.count('class="message message--') == PAGE_MESSAGES
    assert "Question 10" in fragment and "Answer 34" in fragment and "Answer 35" not in fragment
    last = fragment.split('hx-get="')[1].split('"')[0].replace("&amp;", "&")
    rest = web.get(last).content.decode()
    assert "Question 0" in rest and "load-older" not in rest


def test_settings_are_validated_and_reach_the_model_request(alice):
    conversation = conversation_with(alice, title="Tuned")
    web = client_for(alice)
    url = f"{conversation.get_absolute_url()}settings/"
    too_long = web.post(url, {"system_prompt": "", "max_output_tokens": "5000"}).content.decode()
    assert "Max output tokens goes from 1 to 4,096" in too_long
    assert (
        "Ensure this value is less than or equal to 1.0"
        in web.post(url, {"temperature": "1.5"}).content.decode()
    )
    web.post(
        url,
        {
            "system_prompt": "Answer like a pirate.",
            "temperature": "0.3",
            "max_output_tokens": "300",
        },
    )
    conversation.refresh_from_db()
    turn = turns.turn_start(user=alice, conversation=conversation, text="Hi", client_id="s1")
    assert turn.request.system == "Answer like a pirate."
    assert turn.request.temperature == 0.3 and turn.request.max_tokens == 300
    assert (
        conversation.system_prompt
        in client_for(alice).get(conversation.get_absolute_url()).content.decode()
    )


def test_export_as_markdown_and_json_keeps_every_script(alice):
    conversation = conversation_with(alice, (WORLD, "Réponse: 你好 👋"), title=WORLD)
    web = client_for(alice)
    md = web.get(f"{conversation.get_absolute_url()}export.md")
    assert md["Content-Type"] == "text/markdown; charset=utf-8"
    assert "attachment;" in md["Content-Disposition"]
    text = md.content.decode("utf-8")
    assert text.startswith(f"# {WORLD}\n") and "## You" in text and "Réponse: 你好 👋" in text
    data = json.loads(web.get(f"{conversation.get_absolute_url()}export.json").content)
    assert data["title"] == WORLD
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
    assert data["messages"][0]["content"] == WORLD


def test_the_markdown_export_keeps_each_turn_above_the_replies_own_headings(alice):
    reply = (
        "# Overview\n\nIntro.\n\n## Details\n\n- a\n\nSub part\n--------\n\n"
        "```python\n# a comment, not a heading\n```\n\n> ### Quoted\n\n###### Deepest"
    )
    conversation = conversation_with(alice, ("# My question\n\nWhy?", reply), title="Doc")
    text = client_for(alice).get(f"{conversation.get_absolute_url()}export.md").content.decode()
    lines = text.splitlines()
    # The title is the only level-1 heading (the other `# ` line is code, left alone) and
    # the turns the only level-2 ones.
    assert [line for line in lines if line.startswith("# ")] == [
        "# Doc",
        "# a comment, not a heading",
    ]
    code = lines.index("# a comment, not a heading")
    assert lines[code - 1] == "```python" and lines[code + 1] == "```"
    assert [line for line in lines if line.startswith("## ")] == ["## You", "## claude-4-6"]
    assert "### My question" in lines and "Why?" in lines
    assert "### Overview" in lines and "#### Details" in lines and "#### Sub part" in lines
    assert "--------" not in lines  # the underlined heading became a `#` one
    assert "> ##### Quoted" in lines and "###### Deepest" in lines
    assert lines.index("## You") < lines.index("### My question") < lines.index("## claude-4-6")


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("get", ""),
        ("get", "older/?before=999999"),
        ("post", "rename/"),
        ("post", "archive/"),
        ("get", "delete/"),
        ("post", "delete/"),
        ("post", "settings/"),
        ("get", "export.md"),
        ("get", "export.json"),
    ],
)
def test_another_users_conversation_is_a_404_everywhere(alice, bob, method, suffix):
    conversation = conversation_with(alice, ("Secret", "Answer"), title="Alice's")
    response = getattr(client_for(bob), method)(f"{conversation.get_absolute_url()}{suffix}")
    assert response.status_code == 404
    conversation.refresh_from_db()
    assert conversation.title == "Alice's" and not conversation.archived


async def test_regenerate_replaces_the_last_reply(alice, alice_cookie):
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(
        text_data=json.dumps(
            {"type": "send", "message": "Hi [sim:tokens=8]", "client_id": "g1", "conversation": ""}
        )
    )
    await receive_until(comm, f'{DONE}"complete"')
    first = await database_sync_to_async(Message.objects.get)(role="assistant")
    await comm.send_to(text_data=json.dumps({"type": "regenerate", "reply": first.pk}))
    frames = await receive_until(comm, f'{DONE}"complete"')
    await comm.disconnect()
    assert f'<div id="{dom.element_id(first.pk)}" hx-swap-oob="delete"></div>' in frames[0]
    replies = await database_sync_to_async(
        lambda: list(Message.objects.filter(role="assistant").order_by("id"))
    )()
    assert [(r.superseded, r.status) for r in replies] == [(True, "complete"), (False, "complete")]
    assert replies[1].reply_to_id == replies[0].reply_to_id
    records = await database_sync_to_async(UsageRecord.objects.count)()
    assert records == 2  # each answer billed once
    history = await database_sync_to_async(
        lambda: history_for(replies[1].conversation, up_to=replies[1])
    )()
    assert [m.role for m in history] == ["user", "assistant"]


async def test_editing_a_message_replaces_it_and_everything_after(alice, alice_cookie):
    comm = communicator(alice_cookie)
    await comm.connect()
    conversation = ""
    for n, text in enumerate(["First [sim:tokens=4]", "Second [sim:tokens=4]"]):
        await comm.send_to(
            text_data=json.dumps(
                {
                    "type": "send",
                    "message": text,
                    "client_id": f"e{n}",
                    "conversation": conversation,
                }
            )
        )
        frames = await receive_until(comm, f'{DONE}"complete"')
        if not conversation:
            conversation = frames[0].split('data-conversation="')[1].split('"')[0]
    first = await database_sync_to_async(Message.objects.get)(content="First [sim:tokens=4]")
    await comm.send_to(
        text_data=json.dumps(
            {
                "type": "edit",
                "message": first.pk,
                "text": "First, edited [sim:tokens=4]",
                "client_id": "e9",
            }
        )
    )
    frames = await receive_until(comm, f'{DONE}"complete"')
    await comm.disconnect()
    assert frames[0].count('hx-swap-oob="delete"') == 4
    shown = await database_sync_to_async(
        lambda: list(
            Message.objects.filter(superseded=False).order_by("id").values_list("role", "content")
        )
    )()
    assert shown[0] == ("user", "First, edited [sim:tokens=4]") and len(shown) == 2
    assert await database_sync_to_async(Message.objects.filter(superseded=True).count)() == 4


async def test_bob_cannot_regenerate_or_edit_alices_messages(alice, alice_cookie, bob_cookie):
    conversation = await database_sync_to_async(conversation_with)(alice, ("Hi", "Hello"))
    reply = await database_sync_to_async(Message.objects.get)(role="assistant")
    comm = communicator(bob_cookie)
    await comm.connect()
    await comm.send_to(text_data=json.dumps({"type": "regenerate", "reply": reply.pk}))
    assert "There is no reply to regenerate." in (await receive_until(comm, "chat-error"))[-1]
    await comm.send_to(
        text_data=json.dumps(
            {"type": "edit", "message": reply.reply_to_id, "text": "Mine now", "client_id": "b"}
        )
    )
    assert "That message was not found." in (await receive_until(comm, "chat-error"))[-1]
    await comm.disconnect()
    count = await database_sync_to_async(conversation.messages.filter(superseded=False).count)()
    assert count == 2


def test_the_context_gauge_warns_near_the_limit(alice):
    conversation = conversation_with(alice, ("Short", "Reply"))
    web = client_for(alice)
    page = web.get(conversation.get_absolute_url()).content.decode()
    assert 'id="context-meter"' in page and "Near the model" not in page
    # The gauge counts what the next request sends, as the cost hint does: a long question
    # with its answer (a question left unanswered is not sent again).
    long = Message.objects.create(conversation=conversation, role="user", content="word " * 110_000)
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="Yes",
        reply_to=long,
        model="claude-4-6",
    )
    page = web.get(conversation.get_absolute_url()).content.decode()
    assert "Near the model's limit" in page


def test_a_thousand_messages_cost_the_page_no_more_than_ten(alice):
    """Server work and HTML stay bounded as a conversation grows: the same queries and
    about the same page for 10 and 1,000 messages (bench/page.py reports the times)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    web = client_for(alice)
    sizes = {}
    for pairs in (5, 500):
        conversation = conversation_with(
            alice, *[(f"Question {n}", f"Answer {n} " + "word " * 40) for n in range(pairs)]
        )
        web.get(conversation.get_absolute_url())  # warm the session and caches
        with CaptureQueriesContext(connection) as queries:
            page = web.get(conversation.get_absolute_url())
        sizes[pairs] = (len(queries), len(page.content))
    (few_queries, few_bytes), (many_queries, many_bytes) = sizes[5], sizes[500]
    assert many_queries == few_queries
    assert many_bytes < 10 * few_bytes  # 50 messages shown of 1,000, against 10 of 10
    assert many_bytes < 300_000
