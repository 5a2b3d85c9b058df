from __future__ import annotations

import uuid

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from billing import catalog, meter

from .models import Conversation
from .selectors import (
    conversations_for_user,
    get_conversation_for_user,
    history_tokens,
    messages_for_page,
)

PAGE = "conversations/chat.html"


def _page(request: HttpRequest, context: dict[str, object]) -> HttpResponse:
    conversation = context["conversation"]
    context["conversations"] = conversations_for_user(request.user)[:100]
    context["models"] = catalog.available_models()
    context["current_model"] = (
        conversation.model if isinstance(conversation, Conversation) else catalog.default_model()
    )
    context["spend"] = meter.spend_today(request.user)
    context["history_tokens"] = (
        history_tokens(conversation) if isinstance(conversation, Conversation) else 0
    )
    return render(request, PAGE, context)


@login_required
def chat(request: HttpRequest) -> HttpResponse:
    """A new, empty chat. The conversation is created by its first message."""
    return _page(request, {"conversation": None, "messages": []})


@login_required
def conversation(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = get_conversation_for_user(request.user, conversation_id)
    return _page(
        request, {"conversation": conversation, "messages": messages_for_page(conversation)}
    )
