"""`{% stream_parts message %}`: a reply being written, formatted as far as it has come."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe

from conversations import frames
from conversations.models import Message
from conversations.streaming_render import StreamRenderer

register = template.Library()


@register.simple_tag
def stream_parts(message: Message) -> SafeString:
    """The finished and open parts of `message`'s text so far, as the batches build them
    (streaming_render.py): the batches after its checkpoint apply on top. Sanitised HTML."""
    return mark_safe(frames.stream_parts(message.pk, StreamRenderer(message.content)))
