"""The page's element ids from conversations/dom.py, for the templates.

`{{ message.pk|dom_id }}` is a message's id, `{{ message.pk|dom_id:"text" }}` that of its
part; `{% dom_patterns %}` gives static/chat.js the same patterns, as JSON in a
`<script type="application/json">` (data, never run: the Content Security Policy allows it).
"""

from __future__ import annotations

from django import template
from django.utils.html import json_script
from django.utils.safestring import SafeString

from conversations import dom

register = template.Library()


@register.filter
def dom_id(pk: int | str, part: str = "message") -> str:
    return dom.element_id(pk, part)


@register.simple_tag
def dom_patterns() -> SafeString:
    return json_script(dom.PATTERNS, "dom-patterns")
