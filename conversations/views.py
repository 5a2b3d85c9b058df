"""Pages. Reading, the conversation list, search, export and managing a conversation all
work as plain links and forms, without JavaScript; chatting uses the websocket."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from django import forms
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from accounts.http import AuthenticatedHttpRequest
from billing import catalog

from . import exports, figures, services
from .models import Conversation
from .selectors import (
    conversation_page,
    get_conversation_for_user,
    messages_for_page,
    search_conversations,
)

PAGE = "conversations/chat.html"
DIALOGS = {"rename", "settings"}  # the Conversation menu's dialogs a link can open


@dataclass
class ConversationGroup:
    key: str  # today, yesterday, week, older: the list's element ids use it
    label: str
    items: list[Conversation] = field(default_factory=list)


def conversation_groups(
    rows: Sequence[Conversation], *, today: datetime.date | None = None
) -> list[ConversationGroup]:
    """The list, newest first, in groups by the day of each conversation's last activity
    in the active time zone: Today (always, even empty: a conversation opened over the
    socket goes there), Yesterday, Previous 7 days, Older (those only when not empty)."""
    today = today or timezone.localdate()
    groups = [
        ConversationGroup("today", _("Today")),
        ConversationGroup("yesterday", _("Yesterday")),
        ConversationGroup("week", _("Previous 7 days")),
        ConversationGroup("older", _("Older")),
    ]
    for row in rows:
        age = (today - timezone.localdate(row.updated_at)).days
        index = 0 if age <= 0 else 1 if age == 1 else 2 if age <= 7 else 3
        groups[index].items.append(row)
    return [group for group in groups if group.key == "today" or group.items]


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _page(request: AuthenticatedHttpRequest, context: dict[str, object]) -> HttpResponse:
    conversation = context["conversation"]
    rows, context["next_page"] = conversation_page(request.user)
    context["conversation_groups"] = conversation_groups(rows)
    context["models"] = models = catalog.available_models()
    context["current_model"] = current_model = (
        conversation.model if isinstance(conversation, Conversation) else catalog.default_model()
    )
    context["spend"] = figures.spend_for(request.user)
    shown = conversation if isinstance(conversation, Conversation) else None
    context["estimate"] = figures.cost_estimate(shown, models)
    context["gauge"] = figures.context_gauge(shown)
    context["model_name"] = catalog.display_name(current_model)
    if isinstance(conversation, Conversation):
        context.setdefault("open_dialog", _dialog(request))
        context["settings_form"] = context.get("settings_form") or SettingsForm(
            instance=conversation
        )
    return render(request, PAGE, context)


def _dialog(request: HttpRequest) -> str | None:
    """The menu dialog a link asked to open (`?dialog=rename`): the way to it without
    JavaScript."""
    name = request.GET.get("dialog")
    return name if name in DIALOGS else None


@login_required
def chat(request: AuthenticatedHttpRequest) -> HttpResponse:
    """A new, empty chat. The conversation is created by its first message."""
    return _page(request, {"conversation": None, "thread": []})


@login_required
def conversation(request: AuthenticatedHttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = get_conversation_for_user(request.user, conversation_id)
    shown, older = messages_for_page(conversation, before=_int(request.GET.get("before")))
    return _page(request, {"conversation": conversation, "thread": shown, "older": older})


@login_required
def older_messages(request: AuthenticatedHttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """The messages before `before`, for the page to put above the ones it shows."""
    conversation = get_conversation_for_user(request.user, conversation_id)
    shown, older = messages_for_page(conversation, before=_int(request.GET.get("before")))
    return render(
        request,
        f"{PAGE}#older-messages",
        {"conversation": conversation, "thread": shown, "older": older},
    )


@login_required
def conversation_menu(
    request: AuthenticatedHttpRequest, conversation_id: uuid.UUID
) -> HttpResponse:
    """The Conversation menu alone, for a chat that was opened over the websocket."""
    conversation = get_conversation_for_user(request.user, conversation_id)
    return render(
        request,
        f"{PAGE}#conversation-menu",
        {"conversation": conversation, "settings_form": SettingsForm(instance=conversation)},
    )


@login_required
def conversation_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """All the user's conversations, page by page; the archived ones; or a search."""
    query = request.GET.get("q", "").strip()
    archived = request.GET.get("archived") == "1"
    page = _int(request.GET.get("page")) or 1
    if query:
        rows, next_page = search_conversations(request.user, query), None
    else:
        rows, next_page = conversation_page(request.user, archived=archived, page=page)
    context = {
        "rows": rows,
        "next_page": next_page,
        "query": query,
        "archived": archived,
        "spend": figures.spend_for(request.user),
    }
    if request.headers.get("HX-Request") and page > 1:
        return render(request, "conversations/list.html#list-page", context)
    return render(request, "conversations/list.html", context)


@login_required
@require_POST
def rename(request: AuthenticatedHttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = get_conversation_for_user(request.user, conversation_id)
    try:
        services.conversation_rename(conversation=conversation, title=request.POST.get("title", ""))
    except services.TurnRefused as refused:
        flash.error(request, refused.message)
    return redirect(conversation)


@login_required
@require_POST
def archive(request: AuthenticatedHttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = get_conversation_for_user(request.user, conversation_id)
    archived = request.POST.get("archived") == "1"
    services.conversation_archive(conversation=conversation, archived=archived)
    flash.success(
        request, _("Conversation archived.") if archived else _("Conversation back in the list.")
    )
    return redirect("chat" if archived else conversation.get_absolute_url())


@login_required
def delete(request: AuthenticatedHttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """GET asks for confirmation; POST deletes."""
    conversation = get_conversation_for_user(request.user, conversation_id)
    if request.method == "POST":
        try:
            services.conversation_delete(conversation=conversation)
        except services.TurnRefused as refused:
            flash.error(request, refused.message)
            return redirect(conversation)
        flash.success(request, _("Conversation deleted."))
        return redirect("chat")
    return render(request, "conversations/delete.html", {"conversation": conversation})


class SettingsForm(forms.ModelForm):
    class Meta:
        model = Conversation
        fields = ["system_prompt", "temperature", "max_output_tokens"]
        labels = {
            "system_prompt": gettext_lazy("System prompt"),
            "temperature": gettext_lazy("Temperature"),
            "max_output_tokens": gettext_lazy("Max output tokens"),
        }
        help_texts = {
            "system_prompt": gettext_lazy(
                "Instructions the model follows throughout this conversation."
            ),
            "temperature": gettext_lazy("0 to 1; empty for the model's default."),
            "max_output_tokens": gettext_lazy("Longest reply; empty for the model's maximum."),
        }
        widgets = {
            "system_prompt": forms.Textarea(attrs={"rows": 3}),
            "temperature": forms.NumberInput(attrs={"step": "0.1", "min": "0", "max": "1"}),
            "max_output_tokens": forms.NumberInput(attrs={"min": "1"}),
        }


@login_required
@require_POST
def configure(request: AuthenticatedHttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = get_conversation_for_user(request.user, conversation_id)
    form = SettingsForm(request.POST, instance=Conversation.objects.get(pk=conversation.pk))
    if form.is_valid():
        try:
            services.conversation_configure(
                conversation=conversation,
                system_prompt=form.cleaned_data["system_prompt"] or "",
                temperature=form.cleaned_data["temperature"],
                max_output_tokens=form.cleaned_data["max_output_tokens"],
            )
        except services.TurnRefused as refused:
            form.add_error(None, refused.message)
        else:
            flash.success(request, _("Settings saved."))
            return redirect(conversation)
    shown, older = messages_for_page(conversation)
    return _page(
        request,
        {
            "conversation": conversation,
            "thread": shown,
            "older": older,
            "settings_form": form,
            "open_dialog": "settings",
        },
    )


@login_required
def export(request: AuthenticatedHttpRequest, conversation_id: uuid.UUID, fmt: str) -> HttpResponse:
    conversation = get_conversation_for_user(request.user, conversation_id)
    if fmt == "json":
        body, content_type = exports.as_json(conversation), "application/json"
    else:
        body, content_type = exports.as_markdown(conversation), "text/markdown"
    response = HttpResponse(body, content_type=f"{content_type}; charset=utf-8")
    response["Content-Disposition"] = content_disposition_header(
        True, f"{exports.filename(conversation)}.{fmt}"
    )
    return response
