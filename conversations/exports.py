"""A conversation as a file: Markdown to read, JSON to keep or move elsewhere. Both hold
what the page shows (replaced messages are left out), in order, as UTF-8."""

from __future__ import annotations

import json
import re

from . import rendering
from .models import Conversation, Message
from .selectors import shown_messages


def _messages(conversation: Conversation) -> list[Message]:
    return list(shown_messages(conversation).order_by("created_at", "id"))


def filename(conversation: Conversation) -> str:
    """A safe file name from the title (letters of any script are kept)."""
    name = re.sub(r"[^\w\- ]+", "", conversation.display_title).strip().replace(" ", "-")
    return (name or "conversation")[:60]


# A message's own headings go this many levels down, so the file's structure cannot be
# mistaken: its title is the only `#`, each turn a `##`, and a message's headings `###` or
# deeper (levels past 6 stay at 6, still under their turn).
HEADING_SHIFT = 2
_LEAD = re.compile(r"[ \t>]*(?:(?:[-*+]|\d{1,9}[.)])[ \t]+)?[ \t>]*")
_ATX = re.compile(r"^(?P<lead>" + _LEAD.pattern + r")#{1,6}(?=[ \t]|$)")


def shift_headings(text: str, by: int = HEADING_SHIFT) -> str:
    """`text` with each Markdown heading `by` levels deeper (at most 6). Only real headings
    move: a `#` inside a code block or a paragraph is left alone. Underlined headings
    (`Title` over `===`) become `#` headings, the one form that can go deeper than 2."""
    text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    dropped: set[int] = set()
    # The page's own parser (rendering.py): what is a heading here is one there.
    for token in rendering.parse(text):
        if token.type != "heading_open" or token.map is None:
            continue
        level = min(int(token.tag[1]) + by, 6)
        start, end = token.map
        if token.markup.startswith("#"):
            lines[start] = _ATX.sub(rf"\g<lead>{'#' * level}", lines[start], count=1)
            continue
        # Underlined: the text lines, then the underline. The first line keeps its
        # container's prefix (a quote's `>`, a list item's marker).
        lead = _LEAD.match(lines[start])[0]  # type: ignore[index]
        words = " ".join(
            [lines[start][len(lead) :].strip()]
            + [line.strip(" \t>") for line in lines[start + 1 : end - 1]]
        )
        lines[start] = f"{lead}{'#' * level} {words}"
        dropped.update(range(start + 1, end))
    return "\n".join(line for index, line in enumerate(lines) if index not in dropped)


def as_markdown(conversation: Conversation) -> str:
    lines = [f"# {conversation.display_title}", ""]
    if conversation.system_prompt:
        lines += ["**System prompt**", "", conversation.system_prompt, ""]
    for message in _messages(conversation):
        if message.role == Message.Role.USER:
            lines += ["## You", ""]
        else:
            lines += [f"## {message.model_name or message.model or 'Assistant'}", ""]
        lines += [shift_headings(message.content or ""), ""]
        if message.error_text:
            lines += [f"> {message.error_text}", ""]
    return "\n".join(lines).rstrip() + "\n"


def as_json(conversation: Conversation) -> str:
    data = {
        "id": str(conversation.pk),
        "title": conversation.display_title,
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "temperature": conversation.temperature,
        "max_output_tokens": conversation.max_output_tokens,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "messages": [
            {
                "id": message.pk,
                "role": message.role,
                "content": message.content,
                "status": message.status,
                "model": message.model or None,
                "input_tokens": message.input_tokens,
                "output_tokens": message.output_tokens,
                "cost_micros": message.cost_micros,
                "notice": message.error_text or None,
                "created_at": message.created_at.isoformat(),
            }
            for message in _messages(conversation)
        ],
    }
    return json.dumps(data, ensure_ascii=False, indent=2)
