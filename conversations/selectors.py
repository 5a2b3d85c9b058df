"""Reads. Every object-scoped read goes through `get_conversation_for_user`."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404

from llm.base import ChatMessage

from .models import Conversation, Message


def get_conversation_for_user(
    user: AbstractBaseUser | AnonymousUser, conversation_id: object
) -> Conversation:
    """The conversation with this id if `user` owns it; Http404 otherwise, whatever the
    reason (no such id, someone else's, a malformed id), so nothing can be learned."""
    if not user.is_authenticated:
        raise Http404("No such conversation")
    try:
        key = uuid.UUID(str(conversation_id))
    except (TypeError, ValueError, AttributeError):
        raise Http404("No such conversation") from None
    try:
        return Conversation.objects.get(pk=key, owner=user)
    except Conversation.DoesNotExist:
        raise Http404("No such conversation") from None


def conversations_for_user(user: AbstractBaseUser) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner=user).order_by("-updated_at")


def messages_for_page(conversation: Conversation) -> list[Message]:
    return list(conversation.messages.order_by("created_at", "id"))


def history_for(conversation: Conversation, *, up_to: Message) -> list[ChatMessage]:
    """The messages sent to the model for a reply to `up_to`: the conversation as the model
    saw it. A turn that got no text back (refused, or failed before any) is left out with
    its question, so the history alternates user/assistant as the Messages API requires.
    A question answered more than once (Retry) counts with its latest answer."""
    rows = list(
        conversation.messages.filter(id__lte=up_to.id)
        .order_by("created_at", "id")
        .values_list("id", "role", "content", "reply_to_id")
    )
    answer = {
        reply_to: message_id
        for message_id, role, content, reply_to in rows
        if role == "assistant" and content.strip()
    }
    history: list[ChatMessage] = []
    for message_id, role, content, reply_to in rows:
        if role == "user" and message_id != up_to.id and message_id not in answer:
            continue
        if role == "assistant" and reply_to is not None and answer.get(reply_to) != message_id:
            continue
        if not content.strip():
            continue
        if history and history[-1].role == role:
            # Two in a row of one role cannot happen now, but old data is merged, not lost.
            history[-1] = ChatMessage(role, history[-1].content + "\n\n" + content)
        else:
            history.append(ChatMessage(role, content))
    return history


def history_tokens(conversation: Conversation) -> int:
    """About how many tokens the conversation's history adds to the next request, for the
    page's cost estimate (the conservative estimate: this is an upper bound to show)."""
    from billing import catalog

    contents = conversation.messages.values_list("content", flat=True)
    return sum(catalog.estimate_tokens(c) + catalog.MESSAGE_OVERHEAD_TOKENS for c in contents)
