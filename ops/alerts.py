"""Raising, mailing and acknowledging alerts (ops.models.Alert).

`raise_alert` is cheap and safe on any path: it bumps the kind's one open row with a single
UPDATE (F() + n), or makes the row. It never sends mail: `send_due`, run every few seconds
by a background thread of `serve` (`start_sender`), mails what is due, at most once per kind
per ALERT_EMAIL_MINUTES, with the count since the last e-mail. A slow mail server delays no
reply; a dead one loses no alert (the alert stays due and is tried again next round).

An alert raised inside a database transaction is written after it commits (on_commit), so
it does not hold the transaction's locks, and a transaction that rolls back (a refused turn)
does not take the alert with it: the alert waits in this process until the next flush.
"""

from __future__ import annotations

import logging
import smtplib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core import checks
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from . import metrics
from .models import Alert

log = logging.getLogger(__name__)

Kind = Alert.Kind

__all__ = [
    "Kind",
    "acknowledge",
    "alert_failed_checks",
    "flush_pending",
    "open_alerts",
    "raise_alert",
    "send_due",
    "start_sender",
]


@dataclass(frozen=True)
class _Raised:
    kind: str
    count: int
    what_to_check: str
    detail: str
    upstream_status: int | None
    upstream_error_type: str
    upstream_request_id: str
    at: datetime


_pending: list[_Raised] = []
_pending_lock = threading.Lock()


def raise_alert(
    kind: str,
    *,
    what_to_check: str = "",
    count: int = 1,
    detail: str = "",
    upstream_status: int | None = None,
    upstream_error_type: str = "",
    upstream_request_id: str = "",
) -> None:
    """Record that `kind` happened `count` more times. Callers pass what an admin needs,
    never a key or a person's text. Never raises: an alert must not break what raised it."""
    raised = _Raised(
        kind=str(kind),
        count=count,
        what_to_check=what_to_check,
        detail=detail[:2000],
        upstream_status=upstream_status,
        upstream_error_type=upstream_error_type[:100],
        upstream_request_id=upstream_request_id[:200],
        at=timezone.now(),
    )
    metrics.ALERTS.labels(raised.kind).inc(count)
    with _pending_lock:
        _pending.append(raised)
    if _in_transaction():
        transaction.on_commit(flush_pending)
    else:
        flush_pending()


def _in_transaction() -> bool:
    """In a transaction of the app's own (a test case's wrapping one does not count: it
    never commits)."""
    return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


def flush_pending() -> None:
    """Write the alerts raised in this process and not written yet. Each is taken from
    the list before it is written, so it is counted once whoever flushes."""
    while True:
        with _pending_lock:
            if not _pending:
                return
            raised = _pending.pop(0)
        try:
            _write(raised)
        except Exception:  # The database is down: keep it for the next flush.
            log.exception("alert %s could not be recorded", raised.kind)
            with _pending_lock:
                _pending.insert(0, raised)
            return


def _write(raised: _Raised) -> None:
    latest = {
        "last_seen": raised.at,
        "what_to_check": raised.what_to_check,
        "detail": raised.detail,
        "upstream_status": raised.upstream_status,
        "upstream_error_type": raised.upstream_error_type,
        "upstream_request_id": raised.upstream_request_id,
    }

    def bump() -> int:
        return Alert.objects.filter(kind=raised.kind, acknowledged_at__isnull=True).update(
            count=F("count") + raised.count, **latest
        )

    if bump():
        return
    try:
        with transaction.atomic():
            Alert.objects.create(
                kind=raised.kind, first_seen=raised.at, count=raised.count, **latest
            )
    except IntegrityError:  # Another process made the open row first.
        bump()
    log.warning("alert raised: %s", raised.kind)


def open_alerts() -> list[Alert]:
    return list(Alert.objects.filter(acknowledged_at__isnull=True).order_by("-last_seen"))


def acknowledge(alert_id: int, by: AbstractBaseUser) -> bool:
    """Close an open alert for every staff member, recording who and when. False if it
    was closed already (or does not exist)."""
    return bool(
        Alert.objects.filter(pk=alert_id, acknowledged_at__isnull=True).update(
            acknowledged_at=timezone.now(), acknowledged_by=by
        )
    )


# --- e-mail -----------------------------------------------------------------------------
def _due(now: datetime) -> list[Alert]:
    window = now - timedelta(minutes=settings.ALERT_EMAIL_MINUTES)
    return list(
        Alert.objects.filter(
            acknowledged_at__isnull=True, count__gt=F("count_at_last_mail")
        ).filter(Q(last_mailed_at__isnull=True) | Q(last_mailed_at__lte=window))
    )


def _mail_text(alert: Alert) -> tuple[str, str]:
    """The subject and body: what happened, how often, what to check. Nothing else."""
    title = str(Kind(alert.kind).label)
    times = alert.unmailed
    since = "since the last e-mail" if alert.last_mailed_at else "so far"
    subject = f"[{settings.SITE_NAME}] {title}: {times} time{'s' if times != 1 else ''}"
    lines = [
        f"{title}.",
        "",
        f"It happened {times} time{'s' if times != 1 else ''} {since} "
        f"({alert.count} in all since {alert.first_seen:%Y-%m-%d %H:%M} UTC; "
        f"last at {alert.last_seen:%Y-%m-%d %H:%M} UTC).",
    ]
    if alert.what_to_check:
        lines += ["", f"What to check: {alert.what_to_check}"]
    if alert.detail:
        lines += [f"Detail: {alert.detail}"]
    upstream = [
        f"status {alert.upstream_status}" if alert.upstream_status else "",
        f"type {alert.upstream_error_type}" if alert.upstream_error_type else "",
        f"request id {alert.upstream_request_id}" if alert.upstream_request_id else "",
    ]
    if any(upstream):
        lines += [f"Upstream: {', '.join(part for part in upstream if part)}"]
    lines += [
        "",
        "Staff see this alert on every page until someone acknowledges it "
        "(or in Admin -> Operations -> Alerts).",
    ]
    return subject, "\n".join(lines) + "\n"


def send_due(now: datetime | None = None) -> int:
    """Mail every alert that is due: open, with new occurrences, and not mailed within
    ALERT_EMAIL_MINUTES. One e-mail per kind. An alert whose e-mail fails stays due.
    Returns how many e-mails went."""
    flush_pending()
    if not settings.ALERT_EMAILS:
        return 0
    now = now or timezone.now()
    sent = 0
    for alert in _due(now):
        subject, body = _mail_text(alert)
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, settings.ALERT_EMAILS)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("alert e-mail not sent (%s): kept for the next round", type(exc).__name__)
            metrics.ALERT_MAIL_FAILURES.inc()
            break  # the server is down: the rest wait for the next round too
        # Conditional: what this e-mail reported, not what came in while it was sent.
        Alert.objects.filter(pk=alert.pk, count_at_last_mail=alert.count_at_last_mail).update(
            count_at_last_mail=alert.count, last_mailed_at=now
        )
        sent += 1
    return sent


def start_sender(
    interval: float | None = None, *, on_error: Callable[[Exception], None] | None = None
) -> threading.Event:
    """A background thread that runs `send_due` every few seconds (ALERT_SEND_INTERVAL_SECONDS).
    Returns an event that stops it."""
    from django.db import close_old_connections

    stop = threading.Event()
    every = settings.ALERT_SEND_INTERVAL_SECONDS if interval is None else interval

    def loop() -> None:
        while not stop.is_set():
            try:
                send_due()
            except Exception as exc:  # The sender must never take the server down.
                log.exception("alert sender round failed")
                if on_error:
                    on_error(exc)
            finally:
                close_old_connections()
            stop.wait(every)

    threading.Thread(target=loop, name="alert-sender", daemon=True).start()
    return stop


# --- start-up checks --------------------------------------------------------------------
def alert_failed_checks() -> int:
    """Run the system checks; each that fails (an error) becomes one start-up alert naming
    the check ids and what to fix. Returns how many failed."""
    failed = [m for m in checks.run_checks() if m.level >= checks.ERROR and not m.is_silenced()]
    if failed:
        raise_alert(
            Kind.STARTUP_CHECK,
            count=len(failed),
            what_to_check="; ".join(f"{m.id}: {m.hint}" if m.hint else str(m.id) for m in failed),
            detail="; ".join(f"{m.id}: {m.msg}" for m in failed),
        )
    return len(failed)
