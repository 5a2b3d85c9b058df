"""Context handling from the catalog: clamping, fitting history, a message too long."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from billing import catalog
from billing.models import CatalogModel
from conversations.context import fit_history
from conversations.models import Conversation, Message
from conversations.services import TurnRefused
from llm.base import ChatMessage

from .conftest import communicator, receive_until, send_frame

DONE = 'message--assistant" data-status='


def words(n: int) -> int:
    return n


def count(text: str) -> int:
    return len(text.split())


def history(*sizes: int) -> list[ChatMessage]:
    roles = ["user", "assistant"]
    return [ChatMessage(roles[i % 2], " ".join(["w"] * n)) for i, n in enumerate(sizes)]


# Each message costs its words plus the framing overhead.
OVERHEAD = catalog.MESSAGE_OVERHEAD_TOKENS


def test_everything_fits_at_exactly_the_budget():
    messages = history(10, 20, 30)
    kept, omitted, used = fit_history(messages, budget=60 + 3 * OVERHEAD, count=count)
    assert (kept, omitted, used) == (messages, 0, 60 + 3 * OVERHEAD)


def test_one_token_over_leaves_the_oldest_out_and_keeps_a_user_message_first():
    messages = history(10, 20, 30)
    kept, omitted, used = fit_history(messages, budget=60 + 3 * OVERHEAD - 1, count=count)
    # The oldest user message goes; the assistant reply then leading is dropped too.
    assert kept == messages[2:] and omitted == 2 and used == 30 + OVERHEAD


def test_a_message_that_cannot_fit_alone_is_refused():
    with pytest.raises(TurnRefused, match="too long for the model's context window"):
        fit_history(history(50), budget=50 + OVERHEAD - 1, count=count)


def test_the_local_model_is_counted_with_its_own_tokenizer():
    local = CatalogModel.objects.get(slug="smollm2-135m")
    counter = catalog.token_counter(local)
    assert counter("Hello world") == 2
    assert catalog.token_counter(CatalogModel.objects.get(slug="claude-4-6")) is (
        catalog.estimate_tokens
    )


def test_the_estimate_for_other_models_is_conservative():
    # The simulator's tokenizer stands in for claude-4-6's: the estimate never undercounts.
    from llm.simulator.replies import count_tokens, reply_text

    for text in [reply_text("x"), "你好，世界" * 20, "👋🏽 " * 30, "a b c d e f"]:
        assert catalog.estimate_tokens(text) >= count_tokens(text)


@database_sync_to_async
def tiny_model(context_window: int, max_output: int) -> CatalogModel:
    return CatalogModel.objects.create(
        slug="tiny-claude",
        display_name="Tiny Claude",
        provider="anthropic",
        upstream_name="claude-4-6",
        context_window=context_window,
        max_output_tokens=max_output,
        input_price_per_1k_micros=1000,
        output_price_per_1k_micros=2000,
    )


@database_sync_to_async
def messages_of(user) -> list[Message]:
    return list(Message.objects.filter(conversation__owner=user).order_by("id"))


async def test_requests_are_clamped_to_the_models_max_output(alice, alice_cookie):
    await tiny_model(context_window=1000, max_output=10)
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(
        text_data=send_frame("Long please [sim:tokens=50]", "t1", model="tiny-claude")
    )
    frames = await receive_until(comm, DONE + '"cut_off"')
    await comm.disconnect()
    reply = (await messages_of(alice))[1]
    assert reply.output_tokens == 10 and reply.stop_reason == "max_tokens"
    assert "reached the length limit" in frames[-1] and 'value="continue"' in frames[-1]
    assert reply.model_name == "Tiny Claude" and "Tiny Claude" in frames[-1]


async def test_older_messages_are_left_out_and_the_page_says_so(alice, alice_cookie):
    await tiny_model(context_window=100, max_output=20)
    comm = communicator(alice_cookie)
    await comm.connect()
    filler = "word " * 30
    await comm.send_to(text_data=send_frame(filler + "[sim:tokens=15]", "h1", model="tiny-claude"))
    await receive_until(comm, DONE + '"complete"')
    conversation = await database_sync_to_async(Conversation.objects.get)(owner=alice)
    await comm.send_to(text_data=send_frame("And now? [sim:tokens=5]", "h2", str(conversation.pk)))
    frames = await receive_until(comm, DONE + '"complete"')
    await comm.disconnect()
    reply = (await messages_of(alice))[3]
    assert reply.context_omitted == 2
    assert "2 older messages left out to fit the model" in frames[-1]
    assert reply.input_tokens < (await messages_of(alice))[1].input_tokens


async def test_a_message_too_long_for_the_window_is_refused_before_anything(
    alice, alice_cookie, simulator
):
    await tiny_model(context_window=100, max_output=20)
    comm = communicator(alice_cookie)
    await comm.connect()
    requests_before = simulator.app.stats.requests
    long_text = "word " * 200
    await comm.send_to(text_data=send_frame(long_text, "l1", model="tiny-claude"))
    frames = await receive_until(comm, "too long for the model")
    await comm.disconnect()
    assert long_text.strip() in frames[-1]  # the text is given back, not lost
    assert simulator.app.stats.requests == requests_before
    assert await messages_of(alice) == []


async def test_a_disabled_model_cannot_be_chosen(alice, alice_cookie):
    model = await tiny_model(context_window=1000, max_output=10)
    model.enabled = False
    await database_sync_to_async(model.save)()
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(text_data=send_frame("Hi", "d1", model="tiny-claude"))
    frames = await receive_until(comm, "This model is unavailable")
    await comm.disconnect()
    assert "Hi</textarea>" in frames[-1]
