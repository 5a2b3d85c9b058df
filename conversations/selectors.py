"""Reads. Every object-scoped read goes through `get_conversation_for_user`."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet, Sum
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


PAGE_MESSAGES = 50  # messages a page opens with; older ones load on scroll
PAGE_CONVERSATIONS = 50


def conversations_for_user(
    user: AbstractBaseUser, *, archived: bool = False
) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner=user, archived=archived).order_by("-updated_at", "-id")


def conversation_page(
    user: AbstractBaseUser, *, archived: bool = False, page: int = 1
) -> tuple[list[Conversation], int | None]:
    """A page of the user's conversations, newest first, and the next page's number."""
    page = min(max(1, page), 100_000)
    start = (page - 1) * PAGE_CONVERSATIONS
    rows = list(
        conversations_for_user(user, archived=archived).only(
            "id", "title", "updated_at", "archived"
        )[start : start + PAGE_CONVERSATIONS + 1]
    )
    more = len(rows) > PAGE_CONVERSATIONS
    return rows[:PAGE_CONVERSATIONS], page + 1 if more else None


def search_conversations(
    user: AbstractBaseUser, query: str, *, limit: int = 50
) -> list[Conversation]:
    """The user's conversations whose title or any shown message contains `query`
    (case-insensitive), newest first."""
    query = query.strip()
    if not query:
        return []
    matching = Message.objects.filter(
        conversation__owner=user, superseded=False, content__icontains=query
    ).values("conversation_id")
    return list(
        Conversation.objects.filter(owner=user)
        .filter(Q(title__icontains=query) | Q(id__in=matching))
        .order_by("-updated_at")[:limit]
    )


def shown_messages(conversation: Conversation) -> QuerySet[Message]:
    return conversation.messages.filter(superseded=False)


def messages_for_page(
    conversation: Conversation, *, before: int | None = None
) -> tuple[list[Message], int | None]:
    """The newest PAGE_MESSAGES shown messages (before message id `before`, if given), in
    order, and the id to load older ones from (None when these are the first)."""
    rows = shown_messages(conversation)
    if before is not None:
        rows = rows.filter(id__lt=before)
    newest = list(rows.order_by("-id")[: PAGE_MESSAGES + 1])
    more = len(newest) > PAGE_MESSAGES
    page = newest[:PAGE_MESSAGES]
    page.reverse()
    return page, page[0].id if more and page else None


def history_for(
    conversation: Conversation, *, up_to: Message, stored_tokens: dict[str, int] | None = None
) -> list[ChatMessage]:
    """The messages sent to the model for a reply to `up_to`: the conversation as the model
    saw it. A turn that got no text back (refused, or failed before any) is left out with
    its question, so the history alternates user/assistant as the Messages API requires.
    A question answered more than once (Retry) counts with its latest answer.

    With `stored_tokens`, it is filled with each message's stored token estimate (without
    the per-message overhead), by text, so fitting a long history need not count again."""
    rows = list(
        shown_messages(conversation)
        .filter(id__lte=up_to.id)
        .order_by("created_at", "id")
        .values_list("id", "role", "content", "reply_to_id", "context_tokens")
    )
    answer = {
        reply_to: message_id
        for message_id, role, content, reply_to, _tokens in rows
        if role == "assistant" and content.strip()
    }
    if stored_tokens is not None:
        from billing.catalog import MESSAGE_OVERHEAD_TOKENS

        for _id, _role, content, _reply_to, tokens in rows:
            if tokens > MESSAGE_OVERHEAD_TOKENS:
                stored_tokens[content] = tokens - MESSAGE_OVERHEAD_TOKENS
    history: list[ChatMessage] = []
    for message_id, role, content, reply_to, _tokens in rows:
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

    system = conversation.system_prompt
    total = catalog.estimate_tokens(system) if system else 0
    # Each message's estimate is stored with it: one indexed sum, however long the chat.
    stored = shown_messages(conversation).aggregate(total=Sum("context_tokens"))["total"]
    return total + (stored or 0)
