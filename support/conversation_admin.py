"""Conversations in the admin: metadata for whoever may view them; their text only for
admins, or for support after recording why (written to the audit log)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from conversations.models import Conversation, Message

from . import services as support

TEXT_FIELDS = {"content", "content_html", "title", "system_prompt"}
HIDDEN = "(hidden: record a reason to read)"


class TextGuard:
    """No filtering on text in the query string (Django admin allows a lookup on any
    field): it would reveal the text, a character at a time, without a recorded reason."""

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        touches_text = TEXT_FIELDS & set(lookup.split("__"))
        if touches_text and not (request is not None and support.reads_freely(request.user)):
            return False
        return super().lookup_allowed(lookup, value, request)  # type: ignore[misc]


class ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return bool(request.user.is_superuser)


class MessageInline(ReadOnly, admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    show_change_link = True

    # Django takes any list of names; its stubs ask for a list of name groups.
    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:  # type: ignore[override]
        fields = ["role", "status", "input_tokens", "output_tokens", "cost_micros", "error_kind"]
        if obj is not None and support.may_read(request, obj.pk):
            fields.insert(2, "content")
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return self.get_fields(request, obj)


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        min_length=10,
        help_text="Why you need to read this conversation (for example, the ticket it is "
        "about). Kept in the audit log.",
    )


@admin.register(Conversation)
class ConversationAdmin(TextGuard, ReadOnly, admin.ModelAdmin):
    list_display = ["id", "owner", "model", "archived", "updated_at"]
    list_filter = ["model", "archived"]
    inlines = [MessageInline]
    change_form_template = "admin/conversations/conversation/change_form.html"

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        # Searching titles would reveal text: admins only.
        return (
            ["title", "owner__username"]
            if support.reads_freely(request.user)
            else ["owner__username"]
        )

    # Django takes any list of names; its stubs ask for a list of name groups.
    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:  # type: ignore[override]
        fields = ["id", "owner", "model", "archived", "temperature", "max_output_tokens"]
        if obj is not None and support.may_read(request, obj.pk):
            fields[1:1] = ["title", "system_prompt"]
        return [*fields, "created_at", "updated_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return self.get_fields(request, obj)

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        """Titles for whoever may read them (per request: the admin object is shared)."""

        @admin.display(description="title")
        def title(conversation: Conversation) -> str:
            if support.may_read(request, conversation.pk):
                return conversation.display_title
            return HIDDEN

        return [title, "owner", "model", "archived", "updated_at"]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        conversation = self.get_object(request, object_id)
        if conversation is not None and support.reads_freely(request.user):
            support.record_reason(
                request,
                conversation_id=conversation.pk,
                owner=conversation.owner,
                reason="(administrator)",
            )
        extra_context = {
            **(extra_context or {}),
            "text_shown": conversation is not None and support.may_read(request, conversation.pk),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list[Any]:
        read = self.admin_site.admin_view(self.read_view)
        return [path("<uuid:pk>/read/", read, name="conversation-read"), *super().get_urls()]

    def read_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        """Record why, then show the text (for GRANT_SECONDS)."""
        if not (
            request.user.has_perm("support.read_with_reason") or support.reads_freely(request.user)
        ):
            raise PermissionDenied
        conversation = get_object_or_404(Conversation, pk=pk)
        form = ReasonForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            support.record_reason(
                request,
                conversation_id=conversation.pk,
                owner=conversation.owner,
                reason=form.cleaned_data["reason"],
            )
            return redirect(reverse("admin:conversations_conversation_change", args=[pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Record a reason to read this conversation",
            "conversation": conversation,
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/conversations/read_reason.html", context)


@admin.register(Message)
class MessageAdmin(TextGuard, ReadOnly, admin.ModelAdmin):
    list_display = ["id", "conversation_id", "role", "status", "error_kind", "created_at"]
    list_filter = ["role", "status", "error_kind"]
    search_fields = ["upstream_request_id", "conversation__owner__username"]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        message = self.get_object(request, object_id)
        if message is not None and support.reads_freely(request.user):
            conversation = message.conversation
            support.record_reason(
                request,
                conversation_id=conversation.pk,
                owner=conversation.owner,
                reason="(administrator)",
            )
        return super().change_view(request, object_id, form_url, extra_context)

    # Django takes any list of names; its stubs ask for a list of name groups.
    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:  # type: ignore[override]
        names = [f.name for f in Message._meta.fields]
        if obj is None or not support.may_read(request, obj.conversation_id):
            names = [n for n in names if n not in TEXT_FIELDS]
        return names

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return self.get_fields(request, obj)
