from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.translation import gettext as _

from billing import catalog
from billing.errors import CONTINUE, RETRY, entry_for
from billing.meter import cost_micros, format_usd, refusal_words, reset_words, spend_today
from billing.models import CatalogModel


def context_tokens(content: str) -> int:
    """What a message of this text adds to a request, estimated conservatively."""
    return catalog.estimate_tokens(content) + catalog.MESSAGE_OVERHEAD_TOKENS if content else 0


class Conversation(models.Model):
    # Public ids are random: a guessed URL leads nowhere, and ids say nothing about volume.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=100)
    archived = models.BooleanField(default=False)
    # The model's settings for this conversation; empty means the model's defaults.
    system_prompt = models.TextField(blank=True)
    temperature = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    max_output_tokens = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "archived", "-updated_at"])]

    def __str__(self) -> str:
        # Not the title: it is conversation text, and admin pages name objects by this.
        return f"Conversation {str(self.pk)[:8]}"

    def get_absolute_url(self) -> str:
        return reverse("conversation", args=[self.id])

    @property
    def display_title(self) -> str:
        return self.title or _("New chat")


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        COMPLETE = "complete"  # a user message, or a reply that ended normally
        PENDING = "pending"  # a reply whose generation has not produced text yet
        STREAMING = "streaming"
        CUT_OFF = "cut_off"  # ended by max_tokens
        STOPPED = "stopped"  # the user pressed Stop
        FAILED = "failed"
        INTERRUPTED = "interrupted"  # its process died mid-generation

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    # A finished reply's Markdown rendered to safe HTML once, so pages never re-render it.
    content_html = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    # Made by the browser for each send, so a resend of the same message is recognised.
    # NULL for replies: NULLs never collide in the unique constraint below.
    client_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    # For a reply: the user message it answers.
    reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="replies"
    )
    model = models.CharField(max_length=100, blank=True)
    # The model's display name when it answered, as the page shows it.
    model_name = models.CharField(max_length=100, blank=True)
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    stop_reason = models.CharField(max_length=40, blank=True)
    # How many older messages were left out of the request to fit the context window.
    context_omitted = models.PositiveIntegerField(default=0)
    error_kind = models.CharField(max_length=40, blank=True)
    # The figures of how the reply ended, for words written when shown, in the reader's
    # language (never stored as words): a budget refusal's spent and cap (micro-dollars)
    # and reset time (ISO); for a reply the meter shortened, the tokens it was allowed.
    notice_figures = models.JSONField(default=dict, blank=True)
    # Where the text stood when the reply was last continued (Continue extends a reply cut
    # off at the length limit): what came after is that request's output.
    continued_from = models.PositiveIntegerField(default=0)
    # While streaming: the sequence number of the last batch `content` holds (checkpoint).
    stream_seq = models.PositiveIntegerField(default=0)
    # Replaced by Regenerate or by an edit of an earlier message: kept for the record and
    # the bill, no longer shown or sent to the model.
    superseded = models.BooleanField(default=False)
    # About how many tokens this message adds to a request (conservative estimate), kept
    # so the page's context gauge and cost estimate are one sum, not a pass over the text.
    context_tokens = models.PositiveIntegerField(default=0)
    # The meter's reservation for this reply, and what the reply was charged (micro-dollars).
    reservation_id = models.BigIntegerField(null=True, blank=True)
    cost_micros = models.BigIntegerField(null=True, blank=True)
    # Upstream details for admins and support; never shown to the user as such.
    error_detail = models.TextField(blank=True)
    upstream_request_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "client_id"],
                name="message_client_id_unique_per_conversation",
            )
        ]
        indexes = [
            models.Index(fields=["conversation", "created_at"]),
            # A page of the newest shown messages, and their token sum.
            models.Index(fields=["conversation", "superseded", "id"]),
        ]

    def __str__(self) -> str:
        return f"{self.role} message {self.pk}"  # not its text: admin pages show this

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.context_tokens = context_tokens(self.content)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "content" in update_fields:
            kwargs["update_fields"] = {*update_fields, "context_tokens"}
        super().save(*args, **kwargs)

    @property
    def is_active(self) -> bool:
        return self.status in {self.Status.PENDING, self.Status.STREAMING}

    @property
    def ending(self) -> str:
        """The error catalog's key for how this reply ended, if it needs explaining."""
        if self.error_kind:
            return self.error_kind
        if self.status == self.Status.CUT_OFF and self.notice_figures.get("shortened_to"):
            return "budget_shortened"
        if self.status in {self.Status.CUT_OFF, self.Status.INTERRUPTED}:
            return str(self.status)
        return ""

    @property
    def error_text(self) -> str:
        """What the user reads about how a reply ended, in the active language: the error
        catalog's words, or a budget refusal's own with its figures."""
        ending = self.ending
        if not ending:
            return ""
        if ending in {"budget_user", "budget_service"}:
            words = refusal_words(ending.removeprefix("budget_"), self.notice_figures)
            if words:
                return words
        reset = self.notice_figures.get("resets_at")
        if ending == "budget_shortened" and reset:
            reset_at = datetime.fromisoformat(reset)
            if reset_at > timezone.now():  # once past, the reset time says nothing
                return _("%(shortened)s It resets at %(when)s.") % {
                    "shortened": entry_for(ending).user_message,
                    "when": reset_words(reset_at),
                }
        return entry_for(ending).user_message

    @property
    def offer(self) -> str:
        """What the page offers next for this reply: "retry", "continue" or nothing. Only
        what can work: no Retry of a budget refusal before the reset, no Continue the
        budget left cannot pay for."""
        if self.role != self.Role.ASSISTANT or self.is_active or not self.ending:
            return ""
        if self.status == self.Status.CUT_OFF:
            # Cut off, or a Continue of it that failed or was stopped before any new text.
            model = catalog.get_model(self.model)
            if not catalog.can_continue(model) or not self._continue_affordable(model):
                return ""
            return CONTINUE
        if self.ending in {"budget_user", "budget_service"}:
            if self.notice_figures.get("held"):
                return RETRY  # refused for money held by replies being written: it comes back
            reset = self.notice_figures.get("resets_at")
            passed = reset is not None and datetime.fromisoformat(reset) <= timezone.now()
            return RETRY if passed else ""
        return entry_for(self.ending).action

    def _continue_affordable(self, model: CatalogModel | None) -> bool:
        """After a reply shortened to fit the budget: can the money left now pay for a
        Continue (the reply so far read back, and the least useful reply)?"""
        if self.ending != "budget_shortened" or model is None:
            return True
        left = self._left_today
        read_back = (self.input_tokens or 0) + (self.output_tokens or 0)
        least = min(settings.MIN_USEFUL_OUTPUT_TOKENS, model.max_output_tokens)
        return left >= cost_micros(
            read_back,
            least,
            model.input_price_per_1k_micros or 0,
            model.output_price_per_1k_micros or 0,
        )

    @cached_property
    def _left_today(self) -> int:
        """The owner's money left today, read once per message shown (`offer` runs for
        the footer's actions and again for `can_regenerate`)."""
        owner = Conversation.objects.only("owner").get(pk=self.conversation_id).owner
        return spend_today(owner).left_micros

    @property
    def can_regenerate(self) -> bool:
        """Regenerate only where a new answer may help: not instead of a Retry, and not
        after a failure no new request can fix (a refused key, no credit, no budget)."""
        if self.role != self.Role.ASSISTANT or self.reply_to_id is None or self.is_active:
            return False
        offer = self.offer
        if offer == RETRY:
            return False
        if self.ending == "budget_shortened" and not offer:
            return False  # the money left cannot pay for a new answer either
        return not (self.status == self.Status.FAILED and not offer)

    @property
    def used_anything(self) -> bool:
        """Whether the reply used tokens (or cost money): a footer of zeros says nothing."""
        return bool(self.input_tokens or self.output_tokens or self.cost_micros)

    @property
    def announcement(self) -> str:
        """What a screen reader says once a reply has settled."""
        words = self.content[:600] + ("…" if len(self.content) > 600 else "")
        return " ".join(part for part in [_("Reply:"), words, self.error_text] if part)

    @property
    def cost_text(self) -> str:
        return format_usd(self.cost_micros) if self.cost_micros is not None else ""
