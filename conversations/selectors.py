"""Reads. Every object-scoped read goes through `get_conversation_for_user`."""

from __future__ import annotations

import operator
import re
import uuid
from functools import reduce

from django.contrib.auth.models import AnonymousUser, User
from django.db import connection
from django.db.models import OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils.html import escape
from django.utils.safestring import mark_safe

from llm.base import ChatMessage

from .models import Conversation, Message


def get_conversation_for_user(user: User | AnonymousUser, conversation_id: object) -> Conversation:
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


def get_message_for_user(user: User | AnonymousUser, message_id: object, *, role: str) -> Message:
    """The message with this id and role (its conversation loaded with it) if `user` owns
    its conversation; Http404 otherwise, whatever the reason, as for conversations."""
    if not user.is_authenticated:
        raise Http404("No such message")
    try:
        key = int(str(message_id))
    except ValueError:
        raise Http404("No such message") from None
    message = (
        Message.objects.select_related("conversation")
        .filter(pk=key, role=role, conversation__owner=user)
        .first()
    )
    if message is None:
        raise Http404("No such message")
    return message


PAGE_MESSAGES = 50  # messages a page opens with; older ones load on scroll
PAGE_CONVERSATIONS = 50


def conversations_for_user(user: User, *, archived: bool = False) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner=user, archived=archived).order_by("-updated_at", "-id")


def conversation_page(
    user: User, *, archived: bool = False, page: int = 1
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


SEARCH_MAX_WORDS = 10
SNIPPET_CHARS = 160


def search_words(query: str) -> list[str]:
    """The words of a search (letters and digits of any script; punctuation between them
    is ignored), at most SEARCH_MAX_WORDS, each once."""
    words: list[str] = []
    for word in re.findall(r"\w+", query):
        if word.casefold() not in {seen.casefold() for seen in words}:
            words.append(word)
    return words[:SEARCH_MAX_WORDS]


def search_conversations(user: User, query: str, *, limit: int = 50) -> list[Conversation]:
    """The user's conversations in which every word of `query` is in the title or in a
    shown message (words may be in different places, in any order).

    On PostgreSQL this is its full-text search (each word a prefix, `simple` configuration
    so every language is treated alike), best match first; on SQLite a case-insensitive
    match of each word, newest first. Each conversation found carries `title_marked` and
    `snippet`: escaped text with the words in `<mark>`, ready for the page."""
    words = search_words(query)
    if not words:
        return []
    if connection.vendor == "postgresql":
        rows = _search_postgresql(user, words, limit)
    else:
        rows = _search_words(user, words, limit)
    for row in rows:
        row.title_marked = mark_words(row.display_title, words)  # type: ignore[attr-defined]
        row.snippet = _snippet_for(row, words)  # type: ignore[attr-defined]
    return rows


def _search_words(user: User, words: list[str], limit: int) -> list[Conversation]:
    found = Conversation.objects.filter(owner=user)
    for word in words:
        with_word = Message.objects.filter(
            conversation__owner=user, superseded=False, content__icontains=word
        ).values("conversation_id")
        found = found.filter(Q(title__icontains=word) | Q(id__in=with_word))
    return list(found.order_by("-updated_at", "-id")[:limit])


def _search_postgresql(user: User, words: list[str], limit: int) -> list[Conversation]:
    from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

    def prefix(word: str) -> SearchQuery:
        # `word` holds only letters and digits (search_words), so quoting it is enough to
        # keep it a single lexeme: nothing of tsquery's syntax can come from the person.
        return SearchQuery(f"'{word}':*", search_type="raw", config="simple")

    def text_vector() -> SearchVector:
        return SearchVector("content", config="simple")

    every = reduce(operator.and_, (prefix(word) for word in words))
    any_word = reduce(operator.or_, (prefix(word) for word in words))
    title = SearchVector("title", config="simple", weight="A")
    found = Conversation.objects.filter(owner=user).annotate(title_document=title)
    for word in words:
        with_word = (
            Message.objects.filter(conversation__owner=user, superseded=False)
            .annotate(document=text_vector())
            .filter(document=prefix(word))
            .values("conversation_id")
        )
        found = found.filter(Q(title_document=prefix(word)) | Q(id__in=with_word))
    # Ranked: a title with every word first, then the best-matching message's rank.
    best_message = (
        Message.objects.filter(conversation=OuterRef("pk"), superseded=False)
        .annotate(rank=SearchRank(text_vector(), any_word))
        .order_by("-rank")
        .values("rank")[:1]
    )
    found = found.annotate(
        rank=SearchRank(title, every) + Coalesce(Subquery(best_message), Value(0.0))
    )
    return list(found.order_by("-rank", "-updated_at", "-id")[:limit])


def _snippet_for(conversation: Conversation, words: list[str]) -> str:
    """A piece of the message that holds the most of the words (every word, else any),
    newest first: escaped, with the words marked. Empty when only the title matched."""
    shown = shown_messages(conversation).order_by("-id").values_list("content", flat=True)
    every = reduce(operator.and_, (Q(content__icontains=word) for word in words))
    any_word = reduce(operator.or_, (Q(content__icontains=word) for word in words))
    text = shown.filter(every).first() or shown.filter(any_word).first()
    return snippet(text, words) if text else ""


def _words_pattern(words: list[str]) -> re.Pattern[str]:
    longest_first = sorted(words, key=len, reverse=True)
    return re.compile("|".join(re.escape(word) for word in longest_first), re.IGNORECASE)


def mark_words(text: str, words: list[str]) -> str:
    """`text`, escaped, with each occurrence of the words in `<mark>`. Every piece of the
    text goes through escape(): message text is user or model data, never markup."""
    pieces = _words_pattern(words).split(text) if words else [text]
    found = _words_pattern(words).findall(text) if words else []
    out: list[str] = [escape(pieces[0])]
    for match, after in zip(found, pieces[1:], strict=True):
        out.append(f"<mark>{escape(match)}</mark>{escape(after)}")
    return mark_safe("".join(out))  # every piece escaped above


def snippet(text: str, words: list[str], *, size: int = SNIPPET_CHARS) -> str:
    """About `size` characters of `text` around the first of the words, cut at spaces,
    with … where text was left out, escaped and marked (mark_words)."""
    text = " ".join(text.split())
    first = _words_pattern(words).search(text)
    at = first.start() if first else 0
    start = max(0, at - size // 3)
    end = min(len(text), start + size)
    start = max(0, min(start, end - size))
    if start > 0:
        space = text.find(" ", start, at)
        start = space + 1 if space != -1 else start
    if end < len(text):
        space = text.rfind(" ", at, end)
        end = space if space > at else end
    piece = text[start:end]
    return mark_safe(  # mark_words escapes the text
        ("…" if start > 0 else "") + mark_words(piece, words) + ("…" if end < len(text) else "")
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
