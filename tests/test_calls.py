"""The metered call on its own, as the API and batch jobs will use it: no conversation, no
socket. Reserve, a slot in its class, attempts (retried before any text), text to its
listener, one settlement with a usage record per attempt."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from billing import calls, catalog
from billing.models import DailySpend, Reservation, UsageRecord
from llm.base import ChatMessage, ChatRequest


class Collect(calls.Listener):
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.retries: list[float] = []
        self.some_text = asyncio.Event()

    async def text(self, delta: str) -> None:
        self.texts.append(delta)
        if len(self.texts) >= 3:
            self.some_text.set()

    async def retrying(self, seconds: float) -> None:
        self.retries.append(seconds)


@database_sync_to_async
def reserved_call(user, prompt: str, listener: calls.Listener) -> calls.Call:  # type: ignore[no-untyped-def]
    model = catalog.usable("claude-4-6")
    assert model is not None
    grant = calls.reserve(user=user, model=model, input_tokens=20, max_tokens=50)
    return calls.Call(
        reservation_id=grant.reservation_id,
        payer=f"user:{user.pk}",
        spec=model.spec,
        request=ChatRequest(model.row.model_name, [ChatMessage("user", prompt)], 50),
        input_estimate=20,
        priority=calls.Priority.BATCH,
        listener=listener,
    )


@database_sync_to_async
def books(call: calls.Call) -> tuple[Reservation, list[UsageRecord], DailySpend]:
    reservation = Reservation.objects.get(pk=call.reservation_id)
    records = list(UsageRecord.objects.filter(reservation=reservation).order_by("id"))
    return reservation, records, DailySpend.objects.get(scope=f"user:{reservation.user_id}")


async def test_a_call_streams_to_its_listener_and_is_settled_once(alice):
    listener = Collect()
    call = await reserved_call(alice, "Hello [sim:tokens=6]", listener)
    await call.run()
    ending = call.ending()
    recorded = await call.settle(ending, record=lambda charged: charged, then=lambda c: c)
    assert ending.outcome == "complete" and "".join(listener.texts)
    reservation, records, day = await books(call)
    assert reservation.state == "settled" and reservation.charged_micros == recorded > 0
    assert [(r.outcome, r.output_tokens) for r in records] == [("complete", 6)]
    assert (day.reserved_micros, day.spent_micros) == (0, recorded)
    with pytest.raises(RuntimeError, match="settled once"):
        await call.settle(ending, record=lambda charged: charged, then=lambda c: c)
    assert len((await books(call))[1]) == 1


async def test_a_failed_attempt_is_retried_before_any_text_and_each_attempt_recorded(
    alice, settings
):
    settings.UPSTREAM_MAX_ATTEMPTS = 3
    listener = Collect()
    call = await reserved_call(alice, "Hi [sim:error=529x1] [sim:tokens=4]", listener)
    await call.run()
    ending = call.ending()
    await call.settle(ending, record=lambda charged: charged, then=lambda c: c)
    assert len(listener.retries) == 1 and "".join(listener.texts)
    _, records, _ = await books(call)
    assert [r.outcome for r in records] == ["failed", "complete"]
    assert records[0].error_kind == "overloaded" and records[0].charged_micros == 0
    assert records[1].retries == 1


async def test_a_cancelled_call_ends_stopped_and_is_still_settled(alice):
    listener = Collect()
    call = await reserved_call(alice, "Long [sim:tokens=400] [sim:latency=20]", listener)
    task = asyncio.create_task(call.run())
    await asyncio.wait_for(listener.some_text.wait(), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    ending = call.ending(stopped=True)
    charged = await call.settle(ending, record=lambda charged: charged, then=lambda c: c)
    _, records, day = await books(call)
    assert ending.outcome == "stopped" and [r.outcome for r in records] == ["stopped"]
    # Billed for what was received, not the 400 tokens asked for.
    assert 3 <= records[0].output_tokens < 400
    assert day.reserved_micros == 0 and day.spent_micros == charged
