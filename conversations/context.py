"""Fitting a conversation's history into the model's context window. Pure: no database.

A turn sends the newest messages that fit beside the system prompt and a full-length reply;
older ones are left out (and the page says how many). The newest message, the one being
answered, must fit by itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.utils.translation import gettext as _

from billing import catalog
from llm.base import ChatMessage

from .models import Conversation, Message
from .services import TurnRefused


def fit_history(
    history: list[ChatMessage], *, budget: int, count: Callable[[str], int]
) -> tuple[list[ChatMessage], int, int]:
    """The newest messages of `history` whose tokens fit in `budget`, how many older ones
    were left out, and the tokens kept. The newest message (the one being answered) must
    fit by itself."""
    kept: list[ChatMessage] = []
    used = 0
    for message in reversed(history):
        cost = count(message.content) + catalog.MESSAGE_OVERHEAD_TOKENS
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    if not kept:
        raise TurnRefused(
            _(
                "This message alone is too long for the model's context window. "
                "Shorten it or split it into parts."
            )
        )
    kept.reverse()
    # The Messages API wants the conversation to open with the user.
    while kept and kept[0].role != Message.Role.USER:
        used -= count(kept.pop(0).content) + catalog.MESSAGE_OVERHEAD_TOKENS
    return kept, len(history) - len(kept), used


def max_output(conversation: Conversation, model: catalog.Model) -> int:
    """The longest reply this conversation asks for: its setting, within the model's."""
    return model.max_output(conversation.max_output_tokens)


def fit(
    conversation: Conversation,
    model: catalog.Model,
    history: list[ChatMessage],
    stored_tokens: dict[str, int] | None = None,
) -> tuple[list[ChatMessage], int, int]:
    """`history` fitted beside the system prompt and a full-length reply; the tokens
    counted include the system prompt. `stored_tokens` are the messages' stored estimates
    by text (selectors.history_for): used instead of estimating a long history again each
    turn."""
    count = model.count
    if stored_tokens and count is catalog.estimate_tokens:
        count = functools.partial(_stored_or_estimated, stored_tokens)
    system = conversation.system_prompt
    system_tokens = count(system) if system else 0
    budget = model.context_window - max_output(conversation, model) - system_tokens
    messages, omitted, used = fit_history(history, budget=max(0, budget), count=count)
    return messages, omitted, used + system_tokens


def _stored_or_estimated(stored: dict[str, int], text: str) -> int:
    return stored.get(text) or catalog.estimate_tokens(text)
