"""`{% icon "name" %}`: a Lucide icon from the vendored sprite (static/vendor/lucide).

The icon is decoration (`aria-hidden`): the control it sits in carries the accessible name,
as visible text or `aria-label`. With a `label`, the icon stands alone and is named by it.
"""

from __future__ import annotations

from django import template
from django.templatetags.static import static
from django.utils.html import format_html

register = template.Library()


@register.simple_tag
def icon(name: str, label: str = "", css: str = "") -> str:
    href = f"{static('vendor/lucide/sprite.svg')}#{name}"
    classes = f"icon icon-{name} {css}".strip()
    if label:
        return format_html(
            '<svg class="{}" role="img" aria-label="{}" focusable="false">'
            '<use href="{}"></use></svg>',
            classes,
            label,
            href,
        )
    return format_html(
        '<svg class="{}" aria-hidden="true" focusable="false"><use href="{}"></use></svg>',
        classes,
        href,
    )
