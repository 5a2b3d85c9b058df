"""The metered call: the one way any part of the app calls a model.

A chat turn today, API requests and batch rows next: each reserves the most it can cost
(`reserve`, the meter's one transaction), then a `Call` waits for an upstream slot from the
scheduler in its priority class, makes its attempts (retried by themselves before any text,
within the turn's timeouts), streams the text to its caller through a `Listener`, and is
settled exactly once (`Call.settle`) with one usage record per attempt. A reply whose process
died is settled through the same code (`settle_abandoned`).

This module knows money, limits and providers; nothing of conversations, sockets or HTML.
Callers say what their record of the call is (a chat reply, later an API response or a batch
row) with a function run in the settlement's transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TypeVar
from uuid import UUID

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections, transaction
from django.utils import timezone
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from llm.base import (
    ChatRequest,
    ErrorKind,
    Event,
    Queued,
    StreamEnd,
    StreamError,
    StreamStarted,
    TextDelta,
    Usage,
)
from ops import alerts, metrics

from . import catalog, meter
from .errors import CATALOG, admin_detail
from .models import DailySpend, Outcome, Reservation, UsageRecord
from .scheduler import Priority, scheduler

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_R = TypeVar("_R")

__all__ = [
    "Call",
    "Ending",
    "Listener",
    "Priority",
    "off_the_shared_thread",
    "reserve",
    "settle_abandoned",
]


def reserve(
    *,
    user: User,
    model: catalog.Model,
    input_tokens: int,
    max_tokens: int,
    conversation_id: UUID | None = None,
    message_id: int | None = None,
) -> meter.Grant:
    """Hold the most a call can cost against the payer's and the service's day, before
    anything is sent (meter.reserve: one transaction, conditional UPDATEs). Raises
    meter.Refused when the money left cannot pay for it; a model without a price, or the
    service at its daily cap, is also an alert for the administrators."""
    try:
        return meter.reserve(
            user=user,
            model=model.row,
            input_tokens=input_tokens,
            max_tokens=max_tokens,
            conversation_id=conversation_id,
            message_id=message_id,
        )
    except meter.Refused as refused:
        _alert_refusal(refused, model)
        raise


def _alert_refusal(refused: meter.Refused, model: catalog.Model) -> None:
    """The refusals an administrator must act on: a model without a price (the words say
    an administrator has been notified), and the service's own cap (not a person's, and not
    money merely held by replies being written)."""
    if refused.scope == "price":
        alerts.raise_alert(
            alerts.Kind.BUDGET_PRICE,
            what_to_check=f"{CATALOG['budget_price'].admin_action} Model: {model.slug}.",
        )
    elif refused.scope == "service" and not refused.figures.get("held"):
        alerts.raise_alert(
            alerts.Kind.SERVICE_CAP_100,
            what_to_check=str(CATALOG["budget_service"].admin_action),
            detail=_spent_of_cap(refused.figures.get("spent"), refused.figures.get("cap")),
        )


class Listener:
    """What a call tells its caller as it goes. Every method does nothing unless the
    caller overrides it."""

    async def queued(self, ahead: int, seconds: float) -> None:
        """Waiting for an upstream slot: `ahead` requests go first, in about `seconds`."""

    async def waiting(self, position: int) -> None:
        """Waiting in the local model's own queue, `position` requests ahead."""

    async def retrying(self, seconds: float) -> None:
        """The last attempt failed in a way that may work next time: again in `seconds`."""

    async def accepted(self) -> None:
        """The upstream took the request; no text yet."""

    async def text(self, delta: str) -> None:
        """More of the reply. Called for every piece the upstream sends: keep it cheap."""

    def slow(self) -> None:
        """The first token is slow to come (THINKING_CUE_SECONDS). Not awaited."""


class _Retryable(Exception):
    def __init__(self, error: StreamError):
        super().__init__(error.message)
        self.error = error


def _retry_wait(state: RetryCallState) -> float:
    """Honour the upstream's retry-after; otherwise exponential backoff with jitter."""
    failure = state.outcome.exception() if state.outcome else None
    if isinstance(failure, _Retryable) and failure.error.retry_after:
        return float(min(failure.error.retry_after, settings.UPSTREAM_RETRY_WINDOW_SECONDS))
    return float(_backoff(state))


_backoff = wait_random_exponential(multiplier=0.5, max=8)


@dataclass
class Try:
    """One upstream request of a call, as it goes."""

    started_at: float
    finished_at: float = 0.0
    first_token_at: float | None = None
    accepted: bool = False  # the upstream took the request (and may bill for it)
    request_id: str = ""
    usage: Usage = field(default_factory=Usage)
    deltas: int = 0
    end: StreamEnd | None = None
    error: StreamError | None = None

    def bill(self, input_estimate: int, *, outcome: str, retries: int) -> meter.Attempt:
        """What to bill: the upstream's count when it gave one; for a stream cut short,
        the input plus what was received, a token per text delta (each carries at least
        one, so this never bills more than was sent); nothing if never accepted."""
        input_tokens = self.usage.input_tokens or (input_estimate if self.accepted else 0)
        if self.end is not None and self.usage.output_tokens is not None:
            output_tokens = self.usage.output_tokens
        else:
            output_tokens = self.deltas
        error = self.error
        return meter.Attempt(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            outcome=outcome,
            error_kind=error.kind.value if error else "",
            error_detail=admin_detail(error) if error else "",
            upstream_request_id=self.request_id or (error.request_id if error else ""),
            ttft_ms=(
                round((self.first_token_at - self.started_at) * 1000)
                if self.first_token_at
                else None
            ),
            duration_ms=round(((self.finished_at or self.started_at) - self.started_at) * 1000),
            retries=retries,
        )


@dataclass(frozen=True)
class Ending:
    """How a call ended: its outcome, the last attempt's error or end, and every
    attempt as it is billed."""

    outcome: str  # an Outcome
    error: StreamError | None
    end: StreamEnd | None
    attempts: list[meter.Attempt]


class Call:
    """One metered request to a model: a slot, attempts, text streamed to `listener`,
    then `ending` and `settle`, once. Run it in a task of its own: cancelling the task
    (Stop, a closed connection, shutdown) ends the call where it is; it is still settled."""

    def __init__(
        self,
        *,
        reservation_id: int | None,
        payer: str,
        spec: catalog.ProviderSpec,
        request: ChatRequest,
        input_estimate: int,
        priority: Priority,
        listener: Listener,
    ) -> None:
        if reservation_id is None:
            # Every call to a model goes through the meter: no reservation, no call.
            raise ValueError("a call needs a budget reservation")
        self.reservation_id = reservation_id
        self.payer = payer  # who pays: the scheduler serves people in turn
        self.spec = spec
        self.request = request
        self.input_estimate = input_estimate
        self.priority = priority
        self.listener = listener
        self.tries: list[Try] = []
        self.streamed = False  # some text reached the caller
        self._deadline = 0.0
        self._cue: asyncio.TimerHandle | None = None
        self._settled = False

    @property
    def upstream_key(self) -> str:
        return f"{self.spec.name}:{self.request.model}"

    async def run(self) -> None:
        """Attempts until one ends, or fails in a way retrying cannot help, or the retry
        window is spent. Upstream failures end in the last try's `error`; only
        cancellation propagates."""
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + settings.LLM_TOTAL_TIMEOUT
        metrics.ACTIVE_STREAMS.inc()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(settings.UPSTREAM_MAX_ATTEMPTS)
            | stop_after_delay(settings.UPSTREAM_RETRY_WINDOW_SECONDS),
            wait=_retry_wait,
            retry=retry_if_exception_type(_Retryable),
            before_sleep=self._announce_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._retry_if_worth_it(await self._attempt(loop))
        except _Retryable:
            pass  # Out of attempts or time: the last error stands.
        except Exception as exc:  # A bug must still end the call, not leave it spinning.
            log.exception("call for %s failed", self.payer)
            if self.tries:
                self.tries[-1].error = StreamError(kind=ErrorKind.UNKNOWN, message=repr(exc))
        finally:
            self._disarm_cue()
            metrics.ACTIVE_STREAMS.dec()

    async def _retry_if_worth_it(self, current: Try) -> None:
        """Retry only what may work next time, and only before any text was shown: after
        that, the partial reply stands (and the caller may offer Retry)."""
        error = current.error
        if error is not None and error.retryable and not self.streamed:
            if error.kind is ErrorKind.RATE_LIMIT and error.retry_after:
                await scheduler().pause(self.upstream_key, error.retry_after)
            raise _Retryable(error)

    async def _attempt(self, loop: asyncio.AbstractEventLoop) -> Try:
        """One upstream request, streamed to the listener."""
        current = Try(started_at=loop.time())
        self.tries.append(current)
        # Made before the slot is taken, so the request leaves as soon as its slot comes
        # (the first client of a process takes a while to make).
        client = catalog.client(self.spec)
        if self.spec.name != "local":  # the local model queues by itself
            if not await self._slot(current, loop):
                return current
            current.started_at = loop.time()
        stream = client.stream(self.request)
        self._arm_cue(loop)
        try:
            async with asyncio.timeout(None) as limit:
                self._arm(limit, loop, settings.LLM_FIRST_TOKEN_TIMEOUT)
                await self._consume(stream, current, loop, limit)
            if current.end is None and current.error is None:
                current.error = StreamError(
                    kind=ErrorKind.CONNECTION, message="The stream ended early."
                )
        except TimeoutError:
            current.error = self._timeout(current, loop)
        finally:
            current.finished_at = loop.time()
            self._disarm_cue()
            # Closing the stream closes the HTTP response: the upstream stops generating.
            await stream.aclose()  # type: ignore[attr-defined]
        if current.error is not None:
            log.warning("call for %s: %s", self.payer, admin_detail(current.error))
        return current

    async def _slot(self, current: Try, loop: asyncio.AbstractEventLoop) -> bool:
        """Wait for an upstream slot, no longer than the call may take: a request the
        queue lost for good ends as a timeout, and is settled, instead of waiting for ever."""
        metrics.QUEUED.inc()
        try:
            async with asyncio.timeout_at(self._deadline):
                await scheduler().acquire(
                    self.upstream_key,
                    who=self.payer,
                    priority=self.priority,
                    on_queued=self._announce_queue,
                )
        except TimeoutError:
            current.error = StreamError(
                kind=ErrorKind.TIMEOUT, message="No upstream slot within the turn's time."
            )
            current.finished_at = loop.time()
            return False
        finally:
            metrics.QUEUED.dec()
        return True

    async def _consume(
        self,
        stream: AsyncIterator[Event],
        current: Try,
        loop: asyncio.AbstractEventLoop,
        limit: asyncio.Timeout,
    ) -> None:
        """One upstream request's events: text to the listener, the rest kept on `current`."""
        listener = self.listener
        async for event in stream:
            if isinstance(event, TextDelta):
                current.deltas += 1
                if current.first_token_at is None:
                    current.first_token_at = loop.time()
                    self._disarm_cue()
                self._arm(limit, loop, settings.LLM_TOKEN_TIMEOUT)
                self.streamed = True
                await listener.text(event.text)
            elif isinstance(event, Usage):
                current.usage = Usage(
                    input_tokens=event.input_tokens or current.usage.input_tokens,
                    output_tokens=event.output_tokens or current.usage.output_tokens,
                )
            elif isinstance(event, Queued):
                # Waiting in the local model's queue is not the model being slow.
                self._arm(limit, loop, settings.LLM_FIRST_TOKEN_TIMEOUT)
                self._arm_cue(loop)
                await listener.waiting(event.position)
            elif isinstance(event, StreamStarted):
                current.accepted = True
                current.request_id = event.request_id
                if not self.streamed:
                    await listener.accepted()
            elif isinstance(event, StreamEnd):
                current.end = event
            elif isinstance(event, StreamError):
                current.error = event

    def _arm(self, limit: asyncio.Timeout, loop: asyncio.AbstractEventLoop, wait: float) -> None:
        """The stream must show progress within `wait` seconds, and end by the deadline."""
        limit.reschedule(min(loop.time() + wait, self._deadline))

    def _timeout(self, current: Try, loop: asyncio.AbstractEventLoop) -> StreamError:
        if loop.time() >= self._deadline:
            what = f"The reply took longer than {settings.LLM_TOTAL_TIMEOUT:g} s in all."
        elif current.first_token_at is None:
            what = f"No first token within {settings.LLM_FIRST_TOKEN_TIMEOUT:g} s."
        else:
            what = f"No token for {settings.LLM_TOKEN_TIMEOUT:g} s."
        return StreamError(kind=ErrorKind.TIMEOUT, message=what)

    def _arm_cue(self, loop: asyncio.AbstractEventLoop) -> None:
        """Tell the listener if the first token is slow to come."""
        self._disarm_cue()
        if not self.streamed:
            self._cue = loop.call_later(settings.THINKING_CUE_SECONDS, self._slow)

    def _disarm_cue(self) -> None:
        if self._cue is not None:
            self._cue.cancel()
            self._cue = None

    def _slow(self) -> None:
        self._cue = None
        self.listener.slow()

    async def _announce_queue(self, ahead: int, seconds: float) -> None:
        if not self.streamed:
            await self.listener.queued(ahead, seconds)

    async def _announce_retry(self, state: RetryCallState) -> None:
        await self.listener.retrying(state.next_action.sleep if state.next_action else 0)

    # --- the end ----------------------------------------------------------------------------
    def ending(self, *, stopped: bool = False, interrupted: bool = False) -> Ending:
        """How the call ended: stopped by its caller, interrupted (the server shutting
        down), failed (the last attempt's error), cut off at the length limit, or
        complete; and each attempt as billed."""
        last = self.tries[-1] if self.tries else Try(started_at=0.0)
        error, end = last.error, last.end
        if stopped:
            outcome, error = Outcome.STOPPED, None
        elif interrupted:
            outcome, error = Outcome.INTERRUPTED, None
        elif error is not None:
            outcome = Outcome.FAILED
        elif end is not None and end.stop_reason == "max_tokens":
            outcome = Outcome.CUT_OFF
        else:
            outcome = Outcome.COMPLETE
        attempts = [
            try_.bill(
                self.input_estimate,
                outcome=Outcome.FAILED if try_ is not last else outcome,
                retries=len(self.tries) - 1 if try_ is last else 0,
            )
            for try_ in self.tries
        ]
        if not attempts:  # ended before its first attempt began: nothing was sent
            attempts = [meter.Attempt(input_tokens=0, output_tokens=0, outcome=outcome)]
        if outcome == Outcome.INTERRUPTED:
            attempts[-1] = replace(attempts[-1], error_kind="interrupted")
        return Ending(str(outcome), error, end, attempts)

    async def settle(
        self,
        ending: Ending,
        record: Callable[[int | None], _R],
        then: Callable[[_R], _T],
    ) -> _T:
        """Charge what the attempts cost and write their usage records (meter.settle),
        and, in the same transaction, the caller's `record` of the call (given what was
        charged, None if it had been settled already); then, after the commit and in the
        same database thread, `then` of what `record` returned (rendering, say, which
        must not hold the day's rows locked). Once."""
        if self._settled:
            raise RuntimeError("a call is settled once")
        self._settled = True

        def settle_then() -> tuple[int | None, _T]:
            charged, recorded, crossed = _settle(self.reservation_id, ending.attempts, record)
            result = then(recorded)
            # After the commit: an alert never holds the day's rows locked.
            _raise_alerts(ending, crossed)
            return charged, result

        charged, result = await off_the_shared_thread(settle_then)()
        self._count(ending, charged)
        return result

    def _count(self, ending: Ending, charged: int | None) -> None:
        """The call in the Prometheus metrics."""
        metrics.TURNS.labels(ending.outcome).inc()
        metrics.RETRIES.inc(max(0, len(self.tries) - 1))
        for attempt in ending.attempts:
            metrics.TOKENS.labels("input").inc(attempt.input_tokens)
            metrics.TOKENS.labels("output").inc(attempt.output_tokens)
            if attempt.error_kind:
                metrics.UPSTREAM_ERRORS.labels(attempt.error_kind).inc()
        for try_ in self.tries:
            if try_.first_token_at is not None:
                metrics.TTFT.observe(try_.first_token_at - try_.started_at)
        if charged:
            metrics.SPEND.inc(charged)


def _settle(
    reservation_id: int | None,
    attempts: list[meter.Attempt],
    record: Callable[[int | None], _R],
) -> tuple[int | None, _R, list[tuple[str, str]]]:
    """Settle and record in one transaction. Also returns the service's daily-cap marks
    (80%, 100%) this charge crossed, as alert kinds with their figures, to raise after the
    commit."""
    with transaction.atomic():
        charged = None
        crossed: list[tuple[str, str]] = []
        if reservation_id is not None and attempts:  # (none: nothing was reserved)
            charged = meter.settle(reservation_id=reservation_id, attempts=attempts)
            if charged:
                crossed = _cap_crossings(reservation_id, charged)
        return charged, record(charged), crossed


# The service's daily cap, in percent, at which administrators are told.
CAP_MARKS = ((100, alerts.Kind.SERVICE_CAP_100), (80, alerts.Kind.SERVICE_CAP_80))


def _cap_crossings(reservation_id: int, charged: int) -> list[tuple[str, str]]:
    """The marks of the service's cap that this charge went past: read in the settlement's
    transaction, where meter.settle holds the service's row locked, so the spend before and
    after are this charge's own and each mark is crossed by one settlement only."""
    day = Reservation.objects.filter(pk=reservation_id).values_list("day", flat=True).first()
    if day is None:
        return []
    spent = (
        DailySpend.objects.filter(scope=DailySpend.SERVICE, day=day)
        .values_list("spent_micros", flat=True)
        .first()
    )
    if spent is None:
        return []
    cap = meter.service_cap_micros()
    before = spent - charged
    for percent, kind in CAP_MARKS:  # the highest mark crossed only
        mark = cap * percent // 100
        if before < mark <= spent:
            return [(kind, _spent_of_cap(spent, cap))]
    return []


def _spent_of_cap(spent: object, cap: object) -> str:
    """The figures an admin reads: "Spent $80.00 of the $100.00 cap." ("" without them)."""
    if not isinstance(spent, int) or not isinstance(cap, int):
        return ""
    return f"Spent {meter.format_usd(spent)} of the {meter.format_usd(cap)} cap."


# Upstream errors that an administrator must fix: each is an alert of its own kind.
ADMIN_KINDS = frozenset({"authentication", "permission", "billing", "spend_limit"})
# Upstream failures that are an alert when there are many of them (ALERT_UPSTREAM_FAILURES
# in UPSTREAM_FAILURE_WINDOW), across every process (counted in the usage records).
FAILURE_KINDS = frozenset({"server", "overloaded", "timeout"})
UPSTREAM_FAILURE_WINDOW = timedelta(minutes=5)


def _raise_alerts(ending: Ending, crossed: list[tuple[str, str]]) -> None:
    """The alerts a settled call makes. Never fails the call."""
    try:
        _raise_call_alerts(ending, crossed)
    except Exception:
        log.exception("alerts for a call could not be raised")


def _raise_call_alerts(ending: Ending, crossed: list[tuple[str, str]]) -> None:
    # Alerts this process raised in a transaction that rolled back (a refused Retry of a
    # model without a price) are written now, in a worker process without a sender too.
    alerts.flush_pending()
    for kind, figures in crossed:
        alerts.raise_alert(
            kind,
            what_to_check=str(CATALOG["budget_service"].admin_action),
            detail=figures,
        )
    error = ending.error
    for kind in sorted({a.error_kind for a in ending.attempts} & ADMIN_KINDS):
        ours = error is not None and error.kind.value == kind
        alerts.raise_alert(
            kind,
            what_to_check=CATALOG[kind].admin_action,
            upstream_status=error.status if ours and error else None,
            upstream_error_type=error.error_type if ours and error else "",
            upstream_request_id=next(
                (a.upstream_request_id for a in ending.attempts if a.error_kind == kind), ""
            ),
        )
    failures = sum(a.error_kind in FAILURE_KINDS for a in ending.attempts)
    if failures:
        recent = UsageRecord.objects.filter(
            error_kind__in=FAILURE_KINDS,
            created_at__gte=timezone.now() - UPSTREAM_FAILURE_WINDOW,
        ).count()
        if recent > settings.ALERT_UPSTREAM_FAILURES:
            alerts.raise_alert(
                alerts.Kind.UPSTREAM_FAILURES,
                count=failures,
                what_to_check="The provider (or the network to it) is failing: see its status "
                "page, the logs' upstream details, and LLM_FIRST_TOKEN_TIMEOUT.",
                detail=f"{recent} server errors or timeouts in the last 5 minutes.",
                upstream_status=error.status if error else None,
                upstream_error_type=error.error_type if error else "",
                upstream_request_id=error.request_id if error else "",
            )


def settle_abandoned(
    reservation_id: int | None, *, output_text: str, record: Callable[[int | None], _T]
) -> _T:
    """Settle the call of a process that died: the input as estimated, and the text it
    had written (as its last checkpoint kept it), never more than was reserved. Nothing is
    run again. `record` gets what the call was charged in all (also when it had been
    settled already)."""

    def charged_in_all(charged: int | None) -> _T:
        if charged is None and reservation_id is not None:  # settled already: as it was
            charged = (
                Reservation.objects.filter(pk=reservation_id)
                .values_list("charged_micros", flat=True)
                .first()
            )
        return record(charged)

    attempts: list[meter.Attempt] = []
    if reservation_id is not None:
        reservation = Reservation.objects.get(pk=reservation_id)
        output = catalog.estimate_tokens(output_text) if output_text else 0
        attempts.append(
            meter.Attempt(
                input_tokens=reservation.input_tokens_estimate,
                output_tokens=min(output, reservation.max_tokens),
                outcome=Outcome.INTERRUPTED,
                error_kind="interrupted",
            )
        )
    _charged, recorded, crossed = _settle(reservation_id, attempts, charged_in_all)
    for kind, figures in crossed:
        alerts.raise_alert(
            kind, what_to_check=str(CATALOG["budget_service"].admin_action), detail=figures
        )
    return recorded


def off_the_shared_thread(func: Callable[..., _T]) -> Callable[..., Awaitable[_T]]:
    """`func` as a database call that need not queue on the one thread the sockets'
    database calls share: a call that ends, or a round of checkpoints, does not wait behind
    the turns starting, nor they behind it (each thread has its own connection). Not on
    SQLite, which takes one writer at a time anyway (and whose shared in-memory test
    database locks whole tables)."""
    parallel = connections["default"].vendor != "sqlite"
    wrapped: Callable[..., Awaitable[_T]] = database_sync_to_async(
        func, thread_sensitive=not parallel
    )
    return wrapped
