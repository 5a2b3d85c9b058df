"""The conversations the search tests look through, on SQLite (in the test's process) and
on PostgreSQL (tests/scripts/search_page.py, in a process of its own)."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from conversations.models import Conversation, Message
from conversations.rendering import render_markdown

QUERY = "capital France"


def make_conversations() -> None:
    """alice's conversations: three hold both words (in the title, across two messages,
    in one message with markup), one only one of them; bob's holds both."""
    users = get_user_model().objects
    alice = users.filter(username="alice").first() or users.create_user("alice", password="x")
    bob = users.filter(username="bob").first() or users.create_user("bob", password="x")

    def conversation(owner, title: str, *pairs: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
        made = Conversation.objects.create(owner=owner, model="claude-4-6", title=title)
        for question, answer in pairs:
            asked = Message.objects.create(conversation=made, role="user", content=question)
            Message.objects.create(
                conversation=made,
                role="assistant",
                content=answer,
                content_html=render_markdown(answer),
                reply_to=asked,
            )

    conversation(alice, "France, <b>capital</b> of cheese")
    conversation(
        alice,
        "Geography homework",
        ("Which city is the capital?", "Of which country?"),
        ("Of France, please.", "Paris has been the capital of France since 987."),
    )
    conversation(
        alice,
        "Markup",
        ("Say <script>alert(1)</script> the capital of france <img src=x>", "Paris."),
    )
    conversation(alice, "Trip to France", ("Where should we eat?", "Lyon, for the food."))
    conversation(bob, "Bob's capital of France", ("capital France", "Paris"))
