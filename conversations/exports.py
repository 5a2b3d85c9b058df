"""A conversation as a file: Markdown to read, JSON to keep or move elsewhere. Both hold
what the page shows (replaced messages are left out), in order, as UTF-8."""

from __future__ import annotations

import json
import re

from .models import Conversation, Message
from .selectors import shown_messages


def _messages(conversation: Conversation) -> list[Message]:
    return list(shown_messages(conversation).order_by("created_at", "id"))


def filename(conversation: Conversation) -> str:
    """A safe file name from the title (letters of any script are kept)."""
    name = re.sub(r"[^\w\- ]+", "", conversation.display_title).strip().replace(" ", "-")
    return (name or "conversation")[:60]


def as_markdown(conversation: Conversation) -> str:
    lines = [f"# {conversation.display_title}", ""]
    if conversation.system_prompt:
        lines += ["**System prompt**", "", conversation.system_prompt, ""]
    for message in _messages(conversation):
        if message.role == Message.Role.USER:
            lines += ["## You", ""]
        else:
            lines += [f"## {message.model_name or message.model or 'Assistant'}", ""]
        lines += [message.content or "", ""]
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
