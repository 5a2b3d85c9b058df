"""How turns end: the reply's final row, its checkpoints while it streams, and recovery.

A turn ends exactly once (`turn_finish`, in the transaction that settles its call: the
reply and the bill always agree). Generation ends its own turns; `recover_stale_turns`
ends those whose process died, settling them through the same metered-call code
(billing.calls.settle_abandoned).
"""

from __future__ import annotations

import functools
from datetime import timedelta

from django.conf import settings
from django.db import connections, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing import calls, meter
from ops import alerts

from .models import Conversation, Message, context_tokens
from .rendering import render_markdown


def turn_finish(
    *,
    reply_id: int,
    status: str,
    content: str,
    content_html: str,
    charged: int | None,
    last: meter.Attempt | None,
    stop_reason: str = "",
    error_detail: str = "",
) -> Message:
    """Record how a turn's reply ended: its text, status, the last attempt's tokens and
    error (none for a turn recovered after its process died: it is "interrupted"), and what
    it was charged. Run inside the settlement's transaction (billing.calls)."""
    return reply_finish(
        reply_id=reply_id,
        content=content,
        content_html=content_html,
        status=status,
        input_tokens=last.input_tokens if last else None,
        output_tokens=last.output_tokens if last else None,
        stop_reason=stop_reason,
        error_kind=last.error_kind if last else Message.Status.INTERRUPTED,
        error_detail=error_detail,
        upstream_request_id=last.upstream_request_id if last else "",
        cost_micros=charged,
    )


def recover_stale_turns(*, stale_after: int | None = None) -> int:
    """End turns whose process died: the reply is marked interrupted with the text it had
    at its last checkpoint, and its call is settled for the input and that text. Nothing
    is run again. Returns how many turns were recovered."""
    seconds = settings.RECOVERY_STALE_SECONDS if stale_after is None else stale_after
    cutoff = timezone.now() - timedelta(seconds=seconds)
    recovered = 0
    stale = Message.objects.filter(
        role=Message.Role.ASSISTANT,
        status__in=[Message.Status.PENDING, Message.Status.STREAMING],
        updated_at__lt=cutoff,
    )
    for reply in stale:
        done = calls.settle_abandoned(
            reply.reservation_id,
            output_text=reply.content[reply.continued_from :],
            record=functools.partial(_interrupted, reply),
        )
        recovered += done.status == Message.Status.INTERRUPTED
    if recovered:
        # A process died with replies being written: its people saw them stop.
        alerts.raise_alert(
            alerts.Kind.RECOVERY,
            count=recovered,
            what_to_check="A server process stopped with replies being written (a crash, "
            "an out-of-memory kill or a forced restart): see its logs.",
            detail=f"{recovered} reply(ies) settled as interrupted.",
        )
    return recovered


def _interrupted(reply: Message, charged: int | None) -> Message:
    """A recovered reply, as its last checkpoint had it."""
    return turn_finish(
        reply_id=reply.pk,
        status=Message.Status.INTERRUPTED,
        content=reply.content,
        content_html=render_markdown(reply.content) if reply.content else "",
        charged=charged,
        last=None,
    )


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
