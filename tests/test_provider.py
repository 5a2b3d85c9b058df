"""The anthropic provider against the claude-4-6 simulator running on loopback."""

from __future__ import annotations

import httpx
import pytest

from llm.anthropic import AnthropicConfig, AnthropicProvider, _parse_events
from llm.base import (
    ChatMessage,
    ChatRequest,
    ErrorKind,
    Event,
    StreamEnd,
    StreamError,
    StreamStarted,
    TextDelta,
    Usage,
)
from llm.simulator import SimulatorConfig, start_in_thread
from llm.simulator.replies import count_tokens, reply_text

from .conftest import TEST_KEY


def provider_for(url: str, key: str = TEST_KEY, read_timeout: float = 30) -> AnthropicProvider:
    return AnthropicProvider(AnthropicConfig(base_url=url, api_key=key, read_timeout=read_timeout))


def request(text: str, *, max_tokens: int = 1024, model: str = "claude-4-6") -> ChatRequest:
    return ChatRequest(model=model, messages=[ChatMessage("user", text)], max_tokens=max_tokens)


async def collect(provider: AnthropicProvider, req: ChatRequest) -> list[Event]:
    try:
        return [event async for event in provider.stream(req)]
    finally:
        await provider.aclose()


def text_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_it_streams_every_normalised_event(simulator):
    prompt = "What is streaming? [sim:tokens=40]"
    events = await collect(provider_for(simulator.url), request(prompt))

    assert isinstance(events[0], StreamStarted)
    assert events[0].request_id.startswith("req_")
    assert events[0].model == "claude-4-6"
    assert isinstance(events[-1], StreamEnd) and events[-1].stop_reason == "end_turn"
    assert text_of(events) == reply_text(prompt, tokens=40)
    usages = [e for e in events if isinstance(e, Usage)]
    assert usages[-1].output_tokens == 40
    assert usages[-1].input_tokens == 3 + count_tokens(prompt)


async def test_it_reports_a_cut_off_at_max_tokens(simulator):
    events = await collect(
        provider_for(simulator.url), request("Long [sim:tokens=50]", max_tokens=7)
    )
    assert isinstance(events[-1], StreamEnd) and events[-1].stop_reason == "max_tokens"
    assert [e for e in events if isinstance(e, Usage)][-1].output_tokens == 7
    assert len([e for e in events if isinstance(e, TextDelta)]) == 7


@pytest.mark.parametrize(
    ("directive", "status", "kind", "error_type"),
    [
        ("400", 400, ErrorKind.INVALID_REQUEST, "invalid_request_error"),
        ("401", 401, ErrorKind.AUTHENTICATION, "authentication_error"),
        ("402", 402, ErrorKind.BILLING, "billing_error"),
        ("403", 403, ErrorKind.PERMISSION, "permission_error"),
        ("404", 404, ErrorKind.NOT_FOUND, "not_found_error"),
        ("413", 413, ErrorKind.REQUEST_TOO_LARGE, "request_too_large"),
        ("429", 429, ErrorKind.RATE_LIMIT, "rate_limit_error"),
        ("500", 500, ErrorKind.SERVER, "api_error"),
        ("504", 504, ErrorKind.TIMEOUT, "timeout_error"),
        ("529", 529, ErrorKind.OVERLOADED, "overloaded_error"),
        ("spend-limit", 429, ErrorKind.SPEND_LIMIT, "rate_limit_error"),
        ("credit", 400, ErrorKind.BILLING, "invalid_request_error"),
    ],
)
async def test_it_normalises_every_error_status(simulator, directive, status, kind, error_type):
    events = await collect(provider_for(simulator.url), request(f"Hi [sim:error={directive}]"))

    assert len(events) == 1
    error = events[0]
    assert isinstance(error, StreamError)
    assert (error.status, error.kind, error.error_type) == (status, kind, error_type)
    assert error.request_id.startswith("req_")
    assert error.message
    assert error.retryable == (
        kind in {ErrorKind.RATE_LIMIT, ErrorKind.SERVER, ErrorKind.TIMEOUT, ErrorKind.OVERLOADED}
    )
    if kind is ErrorKind.RATE_LIMIT:
        assert error.retry_after == 1.0
    if kind is ErrorKind.SPEND_LIMIT:
        assert error.retry_after is None


async def test_a_wrong_key_is_an_authentication_error(simulator):
    events = await collect(provider_for(simulator.url, key="sk-wrong"), request("Hi"))
    assert isinstance(events[0], StreamError)
    assert (events[0].status, events[0].kind) == (401, ErrorKind.AUTHENTICATION)
    assert events[0].message == "invalid x-api-key"


@pytest.mark.parametrize("auth", ["either", "x-api-key"])
async def test_the_provider_sends_x_api_key_and_works_where_that_is_taken(auth):
    """The provider keeps the header the protocol documents, x-api-key with anthropic-version
    2023-06-01, and no Authorization header: it works against a server that takes either
    header (as the real API does, and the newest SDK's Bearer too) or x-api-key alone."""
    sim = start_in_thread(SimulatorConfig(latency_ms=0, api_key=TEST_KEY, auth=auth))
    try:
        events = await collect(provider_for(sim.url), request("Hi [sim:tokens=3]"))
        assert isinstance(events[-1], StreamEnd)
        assert text_of(events) == reply_text("Hi [sim:tokens=3]", tokens=3)
        assert sim.app.stats.credentials == {"x-api-key": 1}
        assert sim.app.stats.last_version == "2023-06-01"
    finally:
        sim.stop()


async def test_a_server_that_takes_only_bearer_refuses_the_provider_as_authentication():
    """The control for the test above (the provider really sends no Bearer): such a server's
    refusal reaches the app as an authentication error, which the error catalog words."""
    sim = start_in_thread(SimulatorConfig(latency_ms=0, api_key=TEST_KEY, auth="bearer"))
    try:
        events = await collect(provider_for(sim.url), request("Hi [sim:tokens=3]"))
        assert len(events) == 1 and isinstance(events[0], StreamError)
        assert (events[0].status, events[0].kind) == (401, ErrorKind.AUTHENTICATION)
        assert sim.app.stats.credentials == {"x-api-key": 1}
    finally:
        sim.stop()


async def test_a_wrong_model_slug_is_not_found(simulator):
    events = await collect(provider_for(simulator.url), request("Hi", model="claude-9"))
    assert isinstance(events[0], StreamError)
    assert (events[0].status, events[0].kind) == (404, ErrorKind.NOT_FOUND)
    assert "claude-9" in events[0].message


async def test_max_tokens_above_the_model_limit_is_refused(simulator):
    events = await collect(provider_for(simulator.url), request("Hi", max_tokens=4097))
    assert isinstance(events[0], StreamError)
    assert events[0].kind is ErrorKind.INVALID_REQUEST
    assert "4096" in events[0].message


async def test_an_error_event_inside_the_stream_is_classified_by_its_type(simulator):
    events = await collect(
        provider_for(simulator.url),
        request("Hi [sim:tokens=20] [sim:midstream-error=overloaded_error@5]"),
    )
    assert len([e for e in events if isinstance(e, TextDelta)]) == 5
    error = events[-1]
    assert isinstance(error, StreamError)
    assert error.kind is ErrorKind.OVERLOADED and error.status is None
    assert error.error_type == "overloaded_error"


async def test_a_stream_that_breaks_is_a_connection_error_after_its_text(simulator):
    events = await collect(
        provider_for(simulator.url), request("Hi [sim:tokens=20] [sim:break-after=6]")
    )
    assert len([e for e in events if isinstance(e, TextDelta)]) == 6
    assert isinstance(events[-1], StreamError)
    assert events[-1].kind is ErrorKind.CONNECTION


async def test_a_silent_upstream_times_out(simulator):
    provider = provider_for(simulator.url, read_timeout=0.3)
    events = await collect(provider, request("Hi [sim:slow-first=3]"))
    assert isinstance(events[-1], StreamError)
    assert events[-1].kind is ErrorKind.TIMEOUT


async def test_a_refused_connection_is_a_connection_error():
    events = await collect(provider_for("http://127.0.0.1:9"), request("Hi"))
    assert isinstance(events[0], StreamError)
    assert events[0].kind is ErrorKind.CONNECTION


async def test_the_simulator_rate_limits_bursts_with_retry_after():
    sim = start_in_thread(SimulatorConfig(latency_ms=0, rpm=60, burst=2, api_key=TEST_KEY))
    try:
        kinds = []
        for _ in range(3):
            events = await collect(provider_for(sim.url), request("Hi [sim:tokens=2]"))
            kinds.append(events[-1])
        assert isinstance(kinds[0], StreamEnd) and isinstance(kinds[1], StreamEnd)
        assert isinstance(kinds[2], StreamError)
        assert kinds[2].kind is ErrorKind.RATE_LIMIT and kinds[2].status == 429
        assert kinds[2].retry_after == 1.0
        assert sim.app.stats.rate_limited == 1
    finally:
        sim.stop()


async def test_the_simulator_enforces_its_daily_spend_limit():
    sim = start_in_thread(SimulatorConfig(latency_ms=0, api_key=TEST_KEY, daily_limit_micros=30))
    try:
        first = await collect(provider_for(sim.url), request("Hi [sim:tokens=20]"))
        assert isinstance(first[-1], StreamEnd)
        second = await collect(provider_for(sim.url), request("Hi [sim:tokens=20]"))
        assert isinstance(second[-1], StreamError)
        assert second[-1].kind is ErrorKind.SPEND_LIMIT
    finally:
        sim.stop()


async def test_the_simulator_answers_without_streaming_and_on_get(simulator):
    async with httpx.AsyncClient(base_url=simulator.url) as client:
        assert (await client.get("/")).status_code == 200
        response = await client.post(
            "/v1/messages",
            headers={"x-api-key": TEST_KEY, "anthropic-version": "2023-06-01"},
            json={
                "model": "claude-4-6",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "Hi [sim:tokens=9]"}],
            },
        )
        count = await client.post(
            "/v1/messages/count_tokens",
            headers={"x-api-key": TEST_KEY},
            json={"model": "claude-4-6", "messages": [{"role": "user", "content": "a b c"}]},
        )
    body = response.json()
    assert response.headers["request-id"].startswith("req_")
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["stop_reason"] == "max_tokens"
    assert body["usage"]["output_tokens"] == 5
    assert body["content"][0]["text"] == "".join(reply_text("Hi [sim:tokens=9]", tokens=5))
    assert count.json() == {"input_tokens": 6}


async def test_replies_are_deterministic_and_exercise_markdown():
    text = reply_text("Tell me about budgets")
    assert text == reply_text("Tell me about budgets")
    assert text.startswith("## ")
    assert "\n- **" in text
    assert "```python\n" in text


class _SSE:
    def __init__(self, event: str, data: str):
        self.event, self.data = event, data


async def _events(items):
    for item in items:
        yield item


async def test_unknown_events_and_deltas_are_ignored():
    stream = [
        _SSE(
            "message_start",
            '{"type":"message_start","message":{"model":"claude-4-6",'
            '"usage":{"input_tokens":3,"cache_read_input_tokens":4,"output_tokens":1}}}',
        ),
        _SSE("ping", '{"type":"ping"}'),
        _SSE(
            "content_block_delta",
            '{"type":"content_block_delta","delta":{"type":"thinking_delta","thinking":"hm"}}',
        ),
        _SSE(
            "content_block_delta",
            '{"type":"content_block_delta","delta":{"type":"input_json_delta","partial_json":"{"}}',
        ),
        _SSE("brand_new_event", '{"type":"brand_new_event"}'),
        _SSE(
            "content_block_delta",
            '{"type":"content_block_delta","delta":{"type":"text_delta","text":"ok"}}',
        ),
        _SSE(
            "message_delta",
            '{"type":"message_delta","delta":{"stop_reason":"refusal"},"usage":{"output_tokens":2}}',
        ),
        _SSE("message_delta", '{"type":"message_delta","delta":{},"usage":{"output_tokens":5}}'),
        _SSE("message_stop", '{"type":"message_stop"}'),
    ]
    events = [e async for e in _parse_events(_events(stream), "req_1")]
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("ok")]
    assert events[1] == Usage(input_tokens=7)
    # Cumulative usage: the last message_delta wins, it is not added up.
    assert [e for e in events if isinstance(e, Usage)][-1] == Usage(7, 5)
    assert events[-1] == StreamEnd("refusal")


async def test_an_unreadable_event_is_a_malformed_error():
    events = [e async for e in _parse_events(_events([_SSE("message_start", "{not json")]), "r")]
    assert isinstance(events[0], StreamError) and events[0].kind is ErrorKind.MALFORMED


async def test_stamp_marks_each_token_with_when_it_left(simulator):
    import re
    import time

    before = time.time()
    events = await collect(provider_for(simulator.url), request("Hi [sim:tokens=5] [sim:stamp]"))
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    stamps = [float(re.match(r"⟦(\d+\.\d+)⟧", text).group(1)) for text in deltas]
    assert len(stamps) == 5 and before <= stamps[0] <= stamps[-1] <= time.time()
    assert "".join(re.sub(r"⟦[\d.]+⟧", "", t) for t in deltas) == reply_text("Hi", tokens=5)


async def test_stats_say_when_the_latest_request_arrived(simulator):
    import time

    before = time.time()
    await collect(provider_for(simulator.url), request("Hi [sim:tokens=2]"))
    async with httpx.AsyncClient() as client:
        stats = (await client.get(simulator.url + "/stats")).json()
    assert before <= stats["last_request_at"] <= time.time()
