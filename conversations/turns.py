"""Starting turns: a new message, an edit, Regenerate, Retry and Continue.

Each function checks, then writes in one transaction: the user's message (saved before
any upstream call), an empty reply, the history that fits the model's window and a
reservation for the most the reply can cost (billing.calls.reserve). Announcing to
sockets and starting the generation happen after the commit (generation.launch), so no
socket is ever told about a row that was rolled back.

Each takes the lock of the person's row first and checks the fairness limits under it
(fairness.py).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from billing import calls, catalog, meter
from billing.errors import RETRY as OFFERS_RETRY
from llm.base import ChatMessage, ChatRequest

from .context import fit, max_output
from .fairness import lock_for_turn
from .models import Conversation, Message
from .selectors import history_for, shown_messages
from .services import TurnRefused, usable_model

CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TITLE_LENGTH = 60


class TurnKind(enum.StrEnum):
    NEW = "new"  # a message and its reply (an edit too)
    RETRY = "retry"  # a new reply to the same question (Retry, Regenerate)
    CONTINUE = "continue"  # more of the same reply


@dataclass
class Turn:
    conversation: Conversation
    user_message: Message
    reply: Message
    request: ChatRequest | None  # None: a resend of a turn already started, or refused
    created: bool
    model: catalog.Model | None = None  # who answers, resolved once
    input_estimate: int = 0
    kind: TurnKind = TurnKind.NEW
    superseded: list[int] = field(default_factory=list)  # messages no longer shown


def validate_text(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise TurnRefused(_("Type a message first."))
    if len(text) > settings.MESSAGE_MAX_CHARS:
        raise TurnRefused(
            _("This message is too long (%(length)s characters). The limit is %(limit)s.")
            % {"length": f"{len(text):,}", "limit": f"{settings.MESSAGE_MAX_CHARS:,}"}
        )
    return text


def validate_client_id(client_id: str) -> str:
    if not CLIENT_ID_RE.match(client_id or ""):
        raise TurnRefused(_("This message could not be sent. Reload the page and try again."))
    return client_id


def turn_start_new_conversation(
    *, user: User, model: str | None, text: str, client_id: str
) -> Turn:
    """A first message: its conversation and its turn in one transaction, so a message
    that is refused (too fast, too long, a model that cannot be used) leaves no empty,
    untitled conversation behind in the list."""
    resolved = usable_model(model)  # once, for the conversation and its first turn
    with transaction.atomic():
        conversation = Conversation.objects.create(owner=user, model=resolved.slug)
        return turn_start(
            user=user, conversation=conversation, text=text, client_id=client_id, model=resolved
        )


def turn_start(
    *,
    user: User,
    conversation: Conversation,
    text: str,
    client_id: str,
    edit_of: Message | None = None,
    model: catalog.Model | None = None,
) -> Turn:
    """Save the user's message and an empty reply, and build the model request. With
    `edit_of` (one of `conversation`'s user messages), the message replaces that one and
    everything after it. `conversation` is the user's own (selectors.get_conversation_for_user);
    `model`, its model if the caller has resolved it already.

    Idempotent on `client_id`: a second call with the same id (a double Enter, a resend
    after a dropped connection) returns the turn the first call made and starts nothing.
    """
    text = validate_text(text)
    validate_client_id(client_id)
    existing = _existing_turn(conversation, client_id)
    if existing:
        return existing
    model = model or usable_model(conversation.model)
    # Refused before anything is saved or sent: the page puts the text back in the box.
    fit(conversation, model, [ChatMessage(Message.Role.USER, text)])
    superseded: list[int] = []
    try:
        with transaction.atomic():
            locked = lock_for_turn(user, conversation)
            if edit_of is not None:
                superseded = _supersede_from(locked, edit_of)
            user_message = Message.objects.create(
                conversation=locked,
                role=Message.Role.USER,
                content=text,
                client_id=client_id,
                status=Message.Status.COMPLETE,
            )
            if not locked.title:
                locked.title = _title_from(text)
            locked.updated_at = timezone.now()
            locked.save(update_fields=["title", "updated_at"])
            turn = _open_reply(user, locked, user_message, model, kind=TurnKind.NEW)
    except IntegrityError:
        # Another request with this client id won the race: answer with its turn.
        existing = _existing_turn(conversation, client_id)
        if existing:
            return existing
        raise
    turn.superseded = superseded
    return turn


def turn_edit(*, user: User, message: Message, text: str, client_id: str) -> Turn:
    """Send an edited version of one of the user's messages (selectors.get_message_for_user):
    it and every later message are replaced by the new message and its reply (kept for the
    record and the bill, no longer shown or sent)."""
    return turn_start(
        user=user,
        conversation=message.conversation,
        text=text,
        client_id=client_id,
        edit_of=message,
    )


def _supersede_from(conversation: Conversation, edited: Message) -> list[int]:
    """Hide `edited` (a user message) and every message after it; their ids."""
    edited = Message.objects.get(pk=edited.pk)
    if edited.role != Message.Role.USER or edited.superseded:
        raise TurnRefused(_("This message can no longer be edited."))
    replaced = shown_messages(conversation).filter(id__gte=edited.pk)
    ids = list(replaced.values_list("id", flat=True))
    replaced.update(superseded=True)
    return ids


def turn_regenerate(*, user: User, reply: Message) -> Turn:
    """A new answer to the last question, in place of the last reply (which is kept for
    the record and the bill, but no longer shown or sent). `reply` is the user's own
    (selectors.get_message_for_user)."""
    with transaction.atomic():
        locked = lock_for_turn(user, reply.conversation)
        old = Message.objects.get(pk=reply.pk)
        if old.role != Message.Role.ASSISTANT or old.superseded or old.reply_to is None:
            raise TurnRefused(_("This reply cannot be regenerated."))
        return _replace_reply(user, locked, old)


def turn_retry(*, user: User, reply: Message) -> Turn:
    """Answer the question of a failed or interrupted reply again, as a new turn: a new
    reply, a new reservation, billed as one, in the failed reply's place. `reply` is the
    user's own (selectors.get_message_for_user)."""
    with transaction.atomic():
        locked = lock_for_turn(user, reply.conversation)
        failed = Message.objects.get(pk=reply.pk)
        if failed.superseded or failed.offer != OFFERS_RETRY or failed.reply_to is None:
            raise TurnRefused(_("This reply cannot be retried."))
        return _replace_reply(user, locked, failed)


def _replace_reply(user: User, conversation: Conversation, old: Message) -> Turn:
    """Inside the turn's transaction: a new reply takes `old`'s place on the page; `old`
    stays in the records (and the bill), superseded."""
    _must_be_latest(conversation, old)
    model = usable_model(conversation.model)
    old.superseded = True
    old.save(update_fields=["superseded"])
    assert old.reply_to is not None
    turn = _open_reply(user, conversation, old.reply_to, model, kind=TurnKind.RETRY)
    turn.superseded = [old.pk]
    return turn


def turn_continue(*, user: User, reply: Message) -> Turn:
    """Let a reply cut off at the length limit go on: the same reply, extended by a new
    request that hands the model its own text so far (an assistant prefill). Metered and
    billed like any request. `reply` is the user's own (selectors.get_message_for_user)."""
    with transaction.atomic():
        locked = lock_for_turn(user, reply.conversation)
        cut = Message.objects.get(pk=reply.pk)
        prefix = cut.content.rstrip()  # the Messages API refuses a prefill ending in space
        if cut.status != Message.Status.CUT_OFF or cut.reply_to is None or not prefix:
            raise TurnRefused(_("Only a reply cut off at the length limit can be continued."))
        _must_be_latest(locked, cut)
        model = usable_model(cut.model or locked.model)
        if not model.continuable:
            raise TurnRefused(_("This model cannot continue a reply. Ask it to go on instead."))
        history = history_for(locked, up_to=cut.reply_to)
        history.append(ChatMessage(Message.Role.ASSISTANT, prefix))
        messages, omitted, input_tokens = fit(locked, model, history)
        if len(messages) < 2:  # the question no longer fits beside the reply so far
            raise TurnRefused(
                _(
                    "This reply is as long as the model can read back. Ask it to go on in "
                    "a new message instead."
                )
            )
        grant = _reserve(user, locked, cut, model, input_tokens, refuse=True)
        assert grant is not None
        _reopen(cut, prefix, omitted, grant, _shortened(grant, locked, model))
    return Turn(
        locked,
        cut.reply_to,
        cut,
        _request(locked, model, messages, grant),
        created=True,
        model=model,
        input_estimate=input_tokens,
        kind=TurnKind.CONTINUE,
    )


def _reopen(
    cut: Message, prefix: str, omitted: int, grant: meter.Grant, figures: dict[str, object]
) -> None:
    """A cut-off reply, streaming again from its text so far."""
    cut.content = prefix
    cut.context_omitted = omitted
    cut.continued_from = len(prefix)
    cut.stream_seq = 0  # the new generation numbers its batches from 1
    cut.status = Message.Status.STREAMING
    cut.reservation_id = grant.reservation_id
    cut.stop_reason = ""
    cut.notice_figures = figures
    cut.save(
        update_fields=[
            "notice_figures",
            "content",
            "context_omitted",
            "continued_from",
            "stream_seq",
            "status",
            "reservation_id",
            "stop_reason",
            "updated_at",
        ]
    )


def _must_be_latest(conversation: Conversation, reply: Message) -> None:
    if shown_messages(conversation).filter(id__gt=reply.id).exists():
        raise TurnRefused(_("Only the latest reply can be retried, regenerated or continued."))


def _reserve(
    user: User,
    conversation: Conversation,
    reply: Message,
    model: catalog.Model,
    input_tokens: int,
    *,
    refuse: bool,
) -> meter.Grant | None:
    """The reply's reservation. Out of budget: TurnRefused if `refuse`, else the reply
    records the refusal (nothing goes upstream; the user's message stays, to resend
    later) and there is no grant."""
    try:
        return calls.reserve(
            user=user,
            model=model,
            input_tokens=input_tokens,
            max_tokens=max_output(conversation, model),
            conversation_id=conversation.pk,
            message_id=reply.pk,
        )
    except meter.Refused as refused:
        if refuse:
            raise TurnRefused(refused.message) from None
        reply.status = Message.Status.FAILED
        reply.error_kind = f"budget_{refused.scope}"
        reply.notice_figures = refused.figures
        reply.save(update_fields=["context_omitted", "status", "error_kind", "notice_figures"])
        return None


def _shortened(
    grant: meter.Grant, conversation: Conversation, model: catalog.Model
) -> dict[str, object]:
    """The figures of a reply the meter shortened to fit the money left (else none): if it
    is cut off at that limit, it says so, and when the budget resets."""
    if grant.max_tokens >= max_output(conversation, model):
        return {}
    return {
        "shortened_to": grant.max_tokens,
        "resets_at": meter.resets_at(meter.today()).isoformat(),
    }


def _request(
    conversation: Conversation,
    model: catalog.Model,
    messages: list[ChatMessage],
    grant: meter.Grant,
) -> ChatRequest:
    return ChatRequest(
        model=model.row.model_name,
        messages=messages,
        max_tokens=grant.max_tokens,
        system=conversation.system_prompt,
        temperature=conversation.temperature,
    )


def _open_reply(
    user: User,
    conversation: Conversation,
    user_message: Message,
    model: catalog.Model,
    *,
    kind: TurnKind,
) -> Turn:
    """Inside the turn's transaction: an empty reply to `user_message`, the history that
    fits the model's window, and a reservation for the most it can cost. Out of budget, a
    new message's reply records the refusal (nothing goes upstream); a Retry is refused."""
    reply = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Message.Status.PENDING,
        reply_to=user_message,
        model=model.slug,
        model_name=model.row.display_name,
    )
    stored: dict[str, int] = {}
    history = history_for(conversation, up_to=user_message, stored_tokens=stored)
    messages, omitted, input_tokens = fit(conversation, model, history, stored)
    reply.context_omitted = omitted
    grant = _reserve(user, conversation, reply, model, input_tokens, refuse=kind != TurnKind.NEW)
    if grant is None:
        return Turn(conversation, user_message, reply, None, created=True)
    reply.reservation_id = grant.reservation_id
    reply.notice_figures = _shortened(grant, conversation, model)
    reply.save(update_fields=["context_omitted", "reservation_id", "notice_figures"])
    return Turn(
        conversation,
        user_message,
        reply,
        _request(conversation, model, messages, grant),
        created=True,
        model=model,
        input_estimate=input_tokens,
        kind=kind,
    )


def _existing_turn(conversation: Conversation, client_id: str) -> Turn | None:
    user_message = conversation.messages.filter(client_id=client_id).first()
    if user_message is None:
        return None
    reply = user_message.replies.order_by("-id").first()
    if reply is None:
        return None
    conversation.refresh_from_db()
    return Turn(conversation, user_message, reply, request=None, created=False)


def _title_from(text: str) -> str:
    first_line = " ".join(text.split())
    if len(first_line) <= TITLE_LENGTH:
        return first_line
    return first_line[: TITLE_LENGTH - 1].rsplit(" ", 1)[0] + "…"
