"""`{% model_blurb model %}`: one line on what a model is, for the empty chat.

The built-in model gets a fair warning (it is tiny: quick answers, often wrong) and the way
to something better; claude-4-6 gets its model card's own words; any other model a line
that promises nothing about it.
"""

from __future__ import annotations

from django import template
from django.conf import settings
from django.utils.translation import gettext as _

from billing.models import CatalogModel, Provider

register = template.Library()

CLAUDE = "claude-4-6"


@register.simple_tag
def model_blurb(model: CatalogModel) -> str:
    if model.provider == Provider.LOCAL and not settings.LOCAL_MODEL_PATH:
        return _(
            "A small model that runs on this computer: fast, not wise — set "
            "ANTHROPIC_API_KEY for claude-4-6."
        )
    if model.slug == CLAUDE:
        # The model card's overview (seed/model-card-claude-4-6.txt).
        return _(
            "A state-of-the-art text model for high-performance applications, from "
            "creative writing to complex data processing."
        )
    if model.provider == Provider.LOCAL:
        return _("A model that runs on this computer, with no network.")
    return _("A model your administrator has set up for this chat.")
