"""Writes: creating conversations and starting turns.

Each function checks, then writes in one transaction; announcing to sockets and starting
the generation happen after the commit (see `generation.launch`), so no socket is ever
told about a row that was rolled back.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connections, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from billing import catalog, meter
from billing.errors import CONTINUE, RETRY

__all__ = ["CONTINUE", "NEW", "RETRY"]  # the kinds of Turn, with the functions below
from billing.models import CatalogModel, Reservation
from llm.base import ChatMessage, ChatRequest

from .models import Conversation, Message, context_tokens
from .rendering import render_markdown
from .selectors import history_for, shown_messages

NEW = "new"

CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TITLE_LENGTH = 60


class TurnRefused(Exception):
    """The turn cannot start. The message is for the user; the text they typed is kept."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass
class Turn:
    conversation: Conversation
    user_message: Message
    reply: Message
    request: ChatRequest | None  # None when this was a resend of a turn already started
    created: bool
    provider: catalog.ProviderSpec | None = None
    input_estimate: int = 0
    kind: str = "new"  # NEW: a message and its reply; RETRY: a new reply; CONTINUE: more of one
    superseded: list[int] = field(default_factory=list)  # messages no longer shown


def usable_model(slug: str | None) -> CatalogModel:
    """The catalog model `slug` (the default model if empty), if people may use it now."""
    model = catalog.get_model(slug or catalog.default_model())
    if model is None or not model.enabled or not catalog.provider_configured(model.provider):
        raise TurnRefused(_("This model is unavailable. Choose another model."))
    return model


def conversation_create(*, user: AbstractBaseUser, model: str | None = None) -> Conversation:
    return Conversation.objects.create(owner=user, model=usable_model(model).slug)


def turn_start_new_conversation(
    *, user: AbstractBaseUser, model: str | None, text: str, client_id: str
) -> Turn:
    """A first message: its conversation and its turn in one transaction, so a message
    that is refused (too fast, too long, a model that cannot be used) leaves no empty,
    untitled conversation behind in the list."""
    with transaction.atomic():
        conversation = conversation_create(user=user, model=model)
        return turn_start(user=user, conversation=conversation, text=text, client_id=client_id)


def conversation_set_model(*, conversation: Conversation, model: str) -> Conversation:
    """Switch the model that answers from now on (earlier replies keep theirs)."""
    slug = usable_model(model).slug
    if conversation.model != slug:
        conversation.model = slug
        conversation.save(update_fields=["model", "updated_at"])
    return conversation


def fit_history(
    history: list[ChatMessage], *, budget: int, count: Callable[[str], int]
) -> tuple[list[ChatMessage], int, int]:
    """The newest messages of `history` whose tokens fit in `budget`, how many older ones
    were left out, and the tokens kept. The newest message (the one being answered) must
    fit by itself."""
    kept: list[ChatMessage] = []
    used = 0
    for message in reversed(history):
        cost = count(message.content) + catalog.MESSAGE_OVERHEAD_TOKENS
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    if not kept:
        raise TurnRefused(
            _(
                "This message alone is too long for the model's context window. "
                "Shorten it or split it into parts."
            )
        )
    kept.reverse()
    # The Messages API wants the conversation to open with the user.
    while kept and kept[0].role != Message.Role.USER:
        used -= count(kept.pop(0).content) + catalog.MESSAGE_OVERHEAD_TOKENS
    return kept, len(history) - len(kept), used


def _title_from(text: str) -> str:
    first_line = " ".join(text.split())
    if len(first_line) <= TITLE_LENGTH:
        return first_line
    return first_line[: TITLE_LENGTH - 1].rsplit(" ", 1)[0] + "…"


def validate_text(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise TurnRefused(_("Type a message first."))
    if len(text) > settings.MESSAGE_MAX_CHARS:
        raise TurnRefused(
            _("This message is too long (%(length)s characters). The limit is %(limit)s.")
            % {"length": f"{len(text):,}", "limit": f"{settings.MESSAGE_MAX_CHARS:,}"}
        )
    return text


def turn_start(
    *,
    user: AbstractBaseUser,
    conversation: Conversation,
    text: str,
    client_id: str,
    edit_of: Message | None = None,
) -> Turn:
    """Save the user's message and an empty reply, and build the model request. With
    `edit_of`, the message replaces that one and everything after it.

    Idempotent on `client_id`: a second call with the same id (a double Enter, a resend
    after a dropped connection) returns the turn the first call made and starts nothing.
    The caller has already checked that `user` owns `conversation`.
    """
    text = validate_text(text)
    if not CLIENT_ID_RE.match(client_id or ""):
        raise TurnRefused(_("This message could not be sent. Reload the page and try again."))
    existing = _existing_turn(conversation, client_id)
    if existing:
        return existing
    model = usable_model(conversation.model)
    # Refused before anything is saved or sent: the page puts the text back in the box.
    _fit(conversation, model, [ChatMessage(Message.Role.USER, text)])
    superseded: list[int] = []
    try:
        with transaction.atomic():
            locked = _lock_for_turn(user, conversation)
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
            turn = _open_reply(user, locked, user_message, model, kind=NEW)
    except IntegrityError:
        # Another request with this client id won the race: answer with its turn.
        existing = _existing_turn(conversation, client_id)
        if existing:
            return existing
        raise
    turn.superseded = superseded
    return turn


def _supersede_from(conversation: Conversation, edited: Message) -> list[int]:
    """Hide `edited` (a user message) and every message after it; their ids."""
    edited = Message.objects.get(pk=edited.pk)
    if edited.role != Message.Role.USER or edited.superseded:
        raise TurnRefused(_("This message can no longer be edited."))
    replaced = shown_messages(conversation).filter(id__gte=edited.pk)
    ids = list(replaced.values_list("id", flat=True))
    replaced.update(superseded=True)
    return ids


def turn_regenerate(*, user: AbstractBaseUser, reply: Message) -> Turn:
    """A new answer to the last question, in place of the last reply (which is kept for
    the record and the bill, but no longer shown or sent). The caller has checked that
    `user` owns `reply`."""
    with transaction.atomic():
        locked = _lock_for_turn(user, reply.conversation)
        old = Message.objects.get(pk=reply.pk)
        if old.role != Message.Role.ASSISTANT or old.superseded or old.reply_to is None:
            raise TurnRefused(_("This reply cannot be regenerated."))
        _must_be_latest(locked, old)
        model = usable_model(locked.model)
        old.superseded = True
        old.save(update_fields=["superseded"])
        turn = _open_reply(user, locked, old.reply_to, model, kind=RETRY)
    turn.superseded = [old.pk]
    return turn


def turn_edit(*, user: AbstractBaseUser, message: Message, text: str, client_id: str) -> Turn:
    """Send an edited version of one of the user's messages: it and every later message
    are replaced by the new message and its reply (kept for the record and the bill, no
    longer shown or sent). The caller has checked that `user` owns `message`."""
    return turn_start(
        user=user,
        conversation=message.conversation,
        text=text,
        client_id=client_id,
        edit_of=message,
    )


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


def turn_retry(*, user: AbstractBaseUser, reply: Message) -> Turn:
    """Answer the question of a failed or interrupted reply again, as a new turn: a new
    reply, a new reservation, billed as one, in the failed reply's place. The caller has
    checked that `user` owns `reply`."""
    with transaction.atomic():
        locked = _lock_for_turn(user, reply.conversation)
        failed = Message.objects.get(pk=reply.pk)
        if failed.superseded or failed.offer != RETRY or failed.reply_to is None:
            raise TurnRefused(_("This reply cannot be retried."))
        _must_be_latest(locked, failed)
        model = usable_model(locked.model)
        # The new reply takes the failed one's place on the page; the failed one stays in
        # the records (and the bill), superseded, as Regenerate leaves the reply it replaces.
        failed.superseded = True
        failed.save(update_fields=["superseded"])
        turn = _open_reply(user, locked, failed.reply_to, model, kind=RETRY)
    turn.superseded = [failed.pk]
    return turn


def turn_continue(*, user: AbstractBaseUser, reply: Message) -> Turn:
    """Let a reply cut off at the length limit go on: the same reply, extended by a new
    request that hands the model its own text so far (an assistant prefill). Metered and
    billed like any request. The caller has checked that `user` owns `reply`."""
    with transaction.atomic():
        locked = _lock_for_turn(user, reply.conversation)
        cut = Message.objects.get(pk=reply.pk)
        prefix = cut.content.rstrip()  # the Messages API refuses a prefill ending in space
        if cut.status != Message.Status.CUT_OFF or cut.reply_to is None or not prefix:
            raise TurnRefused(_("Only a reply cut off at the length limit can be continued."))
        _must_be_latest(locked, cut)
        model = usable_model(cut.model or locked.model)
        if not catalog.can_continue(model):
            raise TurnRefused(_("This model cannot continue a reply. Ask it to go on instead."))
        history = history_for(locked, up_to=cut.reply_to)
        history.append(ChatMessage(Message.Role.ASSISTANT, prefix))
        messages, omitted, input_tokens = _fit(locked, model, history)
        if len(messages) < 2:  # the question no longer fits beside the reply so far
            raise TurnRefused(
                _(
                    "This reply is as long as the model can read back. Ask it to go on in "
                    "a new message instead."
                )
            )
        try:
            grant = _reserve(user, locked, cut, model, input_tokens)
        except meter.Refused as refused:
            raise TurnRefused(refused.message) from None
        cut.content = prefix
        cut.context_omitted = omitted
        cut.continued_from = len(prefix)
        cut.stream_seq = 0  # the new generation numbers its batches from 1
        cut.status = Message.Status.STREAMING
        cut.reservation_id = grant.reservation_id
        cut.stop_reason = ""
        cut.notice_figures = _shortened(grant, locked, model)
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
    request = _request(locked, model, messages, grant)
    return Turn(
        locked,
        cut.reply_to,
        cut,
        request,
        created=True,
        provider=catalog.spec_for(model),
        input_estimate=input_tokens,
        kind=CONTINUE,
    )


def _lock_for_turn(user: AbstractBaseUser, conversation: Conversation) -> Conversation:
    """Inside a transaction: lock the user's row and the conversation's, then check the
    fairness limits, so two requests of one user cannot both pass them. Returns the locked
    conversation."""
    # FOR NO KEY UPDATE: turns of one person still wait for each other, but a row that
    # merely points at the user or the conversation (a usage record written as another
    # turn settles, holding its day's spend row) is not held up. With FOR UPDATE the two
    # deadlocked: this turn holding the user and waiting for the day's spend row, the
    # settling one holding that row and waiting for the user (its foreign-key check).
    get_user_model().objects.select_for_update(no_key=True).only("pk").get(pk=user.pk)
    locked = Conversation.objects.select_for_update(no_key=True).get(pk=conversation.pk)
    active = Message.objects.filter(
        conversation__owner=user,
        role=Message.Role.ASSISTANT,
        status__in=[Message.Status.PENDING, Message.Status.STREAMING],
    )
    if active.filter(conversation=locked).exists():
        raise TurnRefused(_("Wait for the current reply to finish, or stop it, before sending."))
    if active.count() >= settings.USER_MAX_ACTIVE_REPLIES:
        raise TurnRefused(
            _(
                "You already have %(count)s replies being written. Wait for one to finish, "
                "or stop one, before sending."
            )
            % {"count": settings.USER_MAX_ACTIVE_REPLIES}
        )
    # Every request that may reach a model holds a reservation, and a message refused for
    # want of budget leaves a refused reply: count this minute's of both.
    minute_ago = timezone.now() - timedelta(seconds=60)
    limit = max(1, settings.USER_RPM)
    starts = sorted(
        [
            *Reservation.objects.filter(user=user, created_at__gte=minute_ago)
            .order_by("-created_at")
            .values_list("created_at", flat=True)[:limit],
            *Message.objects.filter(
                conversation__owner=user,
                role=Message.Role.ASSISTANT,
                reservation_id__isnull=True,
                created_at__gte=minute_ago,
            )
            .order_by("-created_at")
            .values_list("created_at", flat=True)[:limit],
        ],
        reverse=True,
    )
    if len(starts) >= limit:
        wait = (starts[limit - 1] + timedelta(seconds=60) - timezone.now()).total_seconds()
        raise TurnRefused(
            ngettext(
                "You're sending faster than %(limit)s message a minute. Try again in %(wait)s s.",
                "You're sending faster than %(limit)s messages a minute. Try again in %(wait)s s.",
                limit,
            )
            % {"limit": limit, "wait": max(1, math.ceil(wait))}
        )
    return locked


def _must_be_latest(conversation: Conversation, reply: Message) -> None:
    if shown_messages(conversation).filter(id__gt=reply.id).exists():
        raise TurnRefused(_("Only the latest reply can be retried, regenerated or continued."))


def _reserve(
    user: AbstractBaseUser,
    conversation: Conversation,
    reply: Message,
    model: CatalogModel,
    input_tokens: int,
) -> meter.Grant:
    return meter.reserve(
        user=user,
        model=model,
        input_tokens=input_tokens,
        max_tokens=max_output(conversation, model),
        conversation_id=conversation.pk,
        message_id=reply.pk,
    )


def _shortened(
    grant: meter.Grant, conversation: Conversation, model: CatalogModel
) -> dict[str, object]:
    """The figures of a reply the meter shortened to fit the money left (else none): if it
    is cut off at that limit, it says so, and when the budget resets."""
    if grant.max_tokens >= max_output(conversation, model):
        return {}
    return {
        "shortened_to": grant.max_tokens,
        "resets_at": meter.resets_at(meter.today()).isoformat(),
    }


def max_output(conversation: Conversation, model: CatalogModel) -> int:
    """The longest reply this conversation asks for: its setting, within the model's."""
    wanted = conversation.max_output_tokens or model.max_output_tokens
    return max(1, min(wanted, model.max_output_tokens))


def _fit(
    conversation: Conversation,
    model: CatalogModel,
    history: list[ChatMessage],
    stored_tokens: dict[str, int] | None = None,
) -> tuple[list[ChatMessage], int, int]:
    """`history` fitted beside the system prompt and a full-length reply; the tokens
    counted include the system prompt. `stored_tokens` are the messages' stored estimates
    by text (history_for): used instead of estimating a long history again each turn."""
    count = catalog.token_counter(model)
    if stored_tokens and count is catalog.estimate_tokens:
        count = functools.partial(_stored_or_estimated, stored_tokens)
    system = conversation.system_prompt
    system_tokens = count(system) if system else 0
    budget = model.context_window - max_output(conversation, model) - system_tokens
    messages, omitted, used = fit_history(history, budget=max(0, budget), count=count)
    return messages, omitted, used + system_tokens


def _stored_or_estimated(stored: dict[str, int], text: str) -> int:
    return stored.get(text) or catalog.estimate_tokens(text)


def _request(
    conversation: Conversation, model: CatalogModel, messages: list[ChatMessage], grant: meter.Grant
) -> ChatRequest:
    return ChatRequest(
        model=model.model_name,
        messages=messages,
        max_tokens=grant.max_tokens,
        system=conversation.system_prompt,
        temperature=conversation.temperature,
    )


def _open_reply(
    user: AbstractBaseUser,
    conversation: Conversation,
    user_message: Message,
    model: CatalogModel,
    *,
    kind: str,
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
        model_name=model.display_name,
    )
    stored: dict[str, int] = {}
    history = history_for(conversation, up_to=user_message, stored_tokens=stored)
    messages, omitted, input_tokens = _fit(conversation, model, history, stored)
    reply.context_omitted = omitted
    try:
        grant = _reserve(user, conversation, reply, model, input_tokens)
    except meter.Refused as refused:
        if kind != NEW:
            raise TurnRefused(refused.message) from None
        # Nothing goes upstream; the user's message stays, to resend later.
        reply.status = Message.Status.FAILED
        reply.error_kind = f"budget_{refused.scope}"
        reply.notice_figures = refused.figures
        reply.save(update_fields=["context_omitted", "status", "error_kind", "notice_figures"])
        return Turn(conversation, user_message, reply, None, created=True)
    reply.reservation_id = grant.reservation_id
    reply.notice_figures = _shortened(grant, conversation, model)
    reply.save(update_fields=["context_omitted", "reservation_id", "notice_figures"])
    request = _request(conversation, model, messages, grant)
    return Turn(
        conversation,
        user_message,
        reply,
        request,
        created=True,
        provider=catalog.spec_for(model),
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


def reply_finish(
    *,
    reply_id: int,
    content: str,
    content_html: str,
    status: str,
    input_tokens: int | None,
    output_tokens: int | None,
    stop_reason: str = "",
    error_kind: str = "",
    error_detail: str = "",
    upstream_request_id: str = "",
    cost_micros: int | None = None,
) -> Message:
    """Record how a reply ended. Only a reply still active is changed: a turn ends once.
    Tokens and cost add to what the reply had: a continued reply is billed for each of its
    requests."""
    added = {
        name: Coalesce(F(name), 0) + value
        for name, value in [
            ("input_tokens", input_tokens),
            ("output_tokens", output_tokens),
            ("cost_micros", cost_micros),
        ]
        if value is not None
    }
    updated = Message.objects.filter(
        pk=reply_id, status__in=[Message.Status.PENDING, Message.Status.STREAMING]
    ).update(
        content=content,
        content_html=content_html,
        context_tokens=context_tokens(content),
        status=status,
        stop_reason=stop_reason,
        error_kind=error_kind,
        error_detail=error_detail,
        upstream_request_id=upstream_request_id,
        updated_at=timezone.now(),
        **added,
    )
    message = Message.objects.get(pk=reply_id)
    if updated:
        Conversation.objects.filter(pk=message.conversation_id).update(updated_at=timezone.now())
    return message


def reply_checkpoint(*, reply_id: int, content: str, seq: int) -> None:
    """Save the text so far of a reply still streaming: all its batches up to `seq`."""
    Message.objects.filter(
        pk=reply_id, status__in=[Message.Status.PENDING, Message.Status.STREAMING]
    ).update(
        content=content,
        stream_seq=seq,
        status=Message.Status.STREAMING,
        updated_at=timezone.now(),
    )


def reply_heartbeat(*, reply_id: int) -> None:
    Message.objects.filter(
        pk=reply_id, status__in=[Message.Status.PENDING, Message.Status.STREAMING]
    ).update(updated_at=timezone.now())


def replies_checkpoint(*, checkpoints: dict[int, tuple[str, int]], heartbeats: set[int]) -> None:
    """reply_checkpoint (reply id -> text and seq) and reply_heartbeat for many replies,
    in one transaction. On PostgreSQL, one statement each: the per-row ORM work of hundreds
    of UPDATEs holds the GIL long enough, once a second, to stall the event loop that
    streams the batches."""
    touched = sorted(heartbeats - checkpoints.keys())
    if connections["default"].vendor != "postgresql":
        with transaction.atomic():
            for reply_id in sorted(checkpoints):
                content, seq = checkpoints[reply_id]
                reply_checkpoint(reply_id=reply_id, content=content, seq=seq)
            for reply_id in touched:
                reply_heartbeat(reply_id=reply_id)
        return
    table = connections["default"].ops.quote_name(Message._meta.db_table)
    active = [Message.Status.PENDING.value, Message.Status.STREAMING.value]
    now = timezone.now()
    with transaction.atomic(), connections["default"].cursor() as cursor:
        if checkpoints:
            ids = sorted(checkpoints)
            cursor.execute(
                f"UPDATE {table} AS m SET content = v.content, stream_seq = v.seq, "
                "status = %s, updated_at = %s "
                "FROM unnest(%s::bigint[], %s::text[], %s::integer[]) AS v(id, content, seq) "
                "WHERE m.id = v.id AND m.status = ANY(%s)",
                [
                    Message.Status.STREAMING.value,
                    now,
                    ids,
                    [checkpoints[i][0] for i in ids],
                    [checkpoints[i][1] for i in ids],
                    active,
                ],
            )
        if touched:
            cursor.execute(
                f"UPDATE {table} SET updated_at = %s WHERE id = ANY(%s) AND status = ANY(%s)",
                [now, touched, active],
            )


def recover_stale_turns(*, stale_after: int | None = None) -> int:
    """End turns whose process died: the reply is marked interrupted with the text it had
    at its last checkpoint, and its reservation is settled for the input and that text.
    Nothing is run again. Returns how many turns were recovered."""
    seconds = settings.RECOVERY_STALE_SECONDS if stale_after is None else stale_after
    cutoff = timezone.now() - timedelta(seconds=seconds)
    recovered = 0
    stale = Message.objects.filter(
        role=Message.Role.ASSISTANT,
        status__in=[Message.Status.PENDING, Message.Status.STREAMING],
        updated_at__lt=cutoff,
    )
    for reply in stale:
        with transaction.atomic():
            if reply.reservation_id is not None:
                reservation = Reservation.objects.get(pk=reply.reservation_id)
                new_text = reply.content[reply.continued_from :]
                output = catalog.estimate_tokens(new_text) if new_text else 0
                meter.settle(
                    reservation_id=reply.reservation_id,
                    attempts=[
                        meter.Attempt(
                            input_tokens=reservation.input_tokens_estimate,
                            output_tokens=min(output, reservation.max_tokens),
                            outcome=Message.Status.INTERRUPTED,
                            error_kind="interrupted",
                        )
                    ],
                )
            charged = (
                Reservation.objects.filter(pk=reply.reservation_id)
                .values_list("charged_micros", flat=True)
                .first()
            )
            done = reply_finish(
                reply_id=reply.pk,
                content=reply.content,
                content_html=render_markdown(reply.content) if reply.content else "",
                status=Message.Status.INTERRUPTED,
                input_tokens=None,
                output_tokens=None,
                error_kind="interrupted",
                cost_micros=charged,
            )
            recovered += done.status == Message.Status.INTERRUPTED
    return recovered
