"""Writes to conversations: create, switch model, rename, archive, delete, configure.

Starting turns is turns.py; how a turn ends (and recovery of a dead process's turns) is
endings.py. Each function takes a conversation the caller got through
selectors.get_conversation_for_user, so it is the user's own.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils.translation import gettext as _

from billing import catalog

from .models import Conversation, Message


class TurnRefused(Exception):
    """The turn (or change) cannot be made. The message is for the user; the text they
    typed is kept."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def usable_model(slug: str | None) -> catalog.Model:
    """The catalog model `slug` (the default model if empty), resolved, if people may use
    it now."""
    model = catalog.usable(slug)
    if model is None:
        raise TurnRefused(_("This model is unavailable. Choose another model."))
    return model


def conversation_create(*, user: User, model: str | None = None) -> Conversation:
    return Conversation.objects.create(owner=user, model=usable_model(model).slug)


def conversation_set_model(*, conversation: Conversation, model: str) -> Conversation:
    """Switch the model that answers from now on (earlier replies keep theirs)."""
    slug = usable_model(model).slug
    if conversation.model != slug:
        conversation.model = slug
        conversation.save(update_fields=["model", "updated_at"])
    return conversation


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    title = " ".join(str(title).split())
    if not title:
        raise TurnRefused(_("A conversation needs a name."))
    conversation.title = title[:200]
    conversation.save(update_fields=["title"])
    return conversation


def conversation_archive(*, conversation: Conversation, archived: bool) -> Conversation:
    conversation.archived = archived
    conversation.save(update_fields=["archived"])
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation and its messages. Not while a reply is being written: its
    turn must end (and be billed) first. Usage records stay: the bill does not change."""
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if locked.messages.filter(
            status__in=[Message.Status.PENDING, Message.Status.STREAMING]
        ).exists():
            raise TurnRefused(_("Stop the reply being written before deleting this conversation."))
        locked.delete()


def conversation_configure(
    *,
    conversation: Conversation,
    system_prompt: str,
    temperature: float | None,
    max_output_tokens: int | None,
) -> Conversation:
    """Set the model's settings for this conversation, within what its model allows."""
    model = usable_model(conversation.model)
    if len(system_prompt) > settings.MESSAGE_MAX_CHARS:
        raise TurnRefused(
            _("The system prompt is too long. The limit is %(limit)s characters.")
            % {"limit": f"{settings.MESSAGE_MAX_CHARS:,}"}
        )
    if temperature is not None and not 0.0 <= temperature <= 1.0:
        raise TurnRefused(_("Temperature goes from 0 to 1."))
    if max_output_tokens is not None and not 1 <= max_output_tokens <= model.max_output_tokens:
        raise TurnRefused(
            _("Max output tokens goes from 1 to %(limit)s for this model.")
            % {"limit": f"{model.max_output_tokens:,}"}
        )
    conversation.system_prompt = system_prompt.strip()
    conversation.temperature = temperature
    conversation.max_output_tokens = max_output_tokens
    conversation.save(update_fields=["system_prompt", "temperature", "max_output_tokens"])
    return conversation
