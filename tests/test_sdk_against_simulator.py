"""The official `anthropic` SDK, pinned at 2.15.0 (a dev dependency), against the claude-4-6
simulator on loopback, unchanged: people point their SDKs at it.

2.15.0 sends the key as `Authorization: Bearer` (no `x-api-key`) and `anthropic-version:
2026-10-21`; each test checks, from the simulator's side, that this is what arrived, so a
passing test proves the simulator takes what the newest SDK really sends. The SDK's own
retries are off (`max_retries=0`): each error must reach the test as the SDK classifies it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import pytest

from llm.simulator import RunningSimulator, SimulatorConfig, start_in_thread
from llm.simulator.replies import count_tokens, reply_text

from .conftest import TEST_KEY

MODEL = "claude-4-6"
SDK_VERSION_HEADER = "2026-10-21"  # what anthropic 2.15.0 sends


def test_the_pinned_sdk_is_the_one_installed():
    assert anthropic.__version__ == "2.15.0"


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    """A simulator of this module's own, so its counts of what arrived are this module's."""
    running = start_in_thread(
        SimulatorConfig(latency_ms=1, rpm=100_000, api_key=TEST_KEY, ping_every=5)
    )
    yield running
    running.stop()


def sdk(url: str, key: str = TEST_KEY, **options: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, **options)


def arrived(running: RunningSimulator, call: Callable[[], Any]) -> tuple[Any, dict[str, int]]:
    """Run `call`; return its result and the credential headers the simulator saw meanwhile
    (counted by kind: "x-api-key", "bearer", "both", "none")."""
    before = dict(running.app.stats.credentials)
    result = call()
    after = running.app.stats.credentials
    return result, {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# --- what succeeds -------------------------------------------------------------------------
def test_create_sends_bearer_and_the_sdk_version_and_reads_the_message(sim):
    # A request hook shows what left the SDK (whether each header was there, never the key).
    sent: list[tuple[bool, str]] = []

    def note(request: Any) -> None:
        sent.append(
            ("x-api-key" in request.headers, request.headers.get("authorization", "").split()[0])
        )

    prompt = "Hello there [sim:tokens=12]"
    with sdk(
        sim.url, http_client=anthropic.DefaultHttpxClient(event_hooks={"request": [note]})
    ) as c:
        message, seen = arrived(
            sim, lambda: c.messages.create(model=MODEL, max_tokens=100, messages=ask(prompt))
        )

    assert sent == [(False, "Bearer")]
    assert seen == {"bearer": 1}
    assert sim.app.stats.last_version == SDK_VERSION_HEADER
    assert message.id.startswith("msg_")
    assert message._request_id.startswith("req_")
    assert message.model == MODEL and message.role == "assistant"
    assert message.content[0].text == reply_text(prompt, tokens=12)
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 12
    assert message.usage.input_tokens == 3 + count_tokens(prompt)


def test_stream_gives_text_deltas_a_final_message_and_usage(sim):
    prompt = "Tell me about streams [sim:tokens=20]"
    with sdk(sim.url) as c:

        def run() -> tuple[list[str], Any]:
            with c.messages.stream(model=MODEL, max_tokens=100, messages=ask(prompt)) as stream:
                return list(stream.text_stream), stream.get_final_message()

        (texts, final), seen = arrived(sim, run)

    assert seen == {"bearer": 1}
    assert len(texts) == 20  # one delta a token, the pings among them skipped
    assert "".join(texts) == reply_text(prompt, tokens=20)
    assert final.content[0].text == "".join(texts)
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 20
    assert final.usage.input_tokens == 3 + count_tokens(prompt)


def test_a_reply_cut_off_at_max_tokens_says_so_created_and_streamed(sim):
    prompt = "A long answer please [sim:tokens=9]"
    with sdk(sim.url) as c:
        message = c.messages.create(model=MODEL, max_tokens=5, messages=ask(prompt))
        with c.messages.stream(model=MODEL, max_tokens=5, messages=ask(prompt)) as stream:
            streamed = stream.get_final_message()

    for reply in (message, streamed):
        assert reply.stop_reason == "max_tokens"
        assert reply.usage.output_tokens == 5
        assert reply.content[0].text == reply_text(prompt, tokens=5)


async def test_the_async_client_streams(sim):
    prompt = "Async, please [sim:tokens=15]"
    before = dict(sim.app.stats.credentials)
    async with anthropic.AsyncAnthropic(base_url=sim.url, api_key=TEST_KEY, max_retries=0) as c:
        async with c.messages.stream(model=MODEL, max_tokens=100, messages=ask(prompt)) as stream:
            texts = [text async for text in stream.text_stream]
            final = await stream.get_final_message()

    assert sim.app.stats.credentials["bearer"] == before.get("bearer", 0) + 1
    assert "".join(texts) == reply_text(prompt, tokens=15)
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 15


def test_any_date_is_a_version(sim):
    with sdk(sim.url, default_headers={"anthropic-version": "2099-12-31"}) as c:
        message = c.messages.create(model=MODEL, max_tokens=5, messages=ask("Hi [sim:tokens=2]"))
    assert message.stop_reason == "end_turn"
    assert sim.app.stats.last_version == "2099-12-31"


# --- what fails, as the SDK classifies it --------------------------------------------------
def test_a_wrong_bearer_key_is_a_401_that_speaks_of_the_bearer_token(sim):
    with sdk(sim.url, key="sk-not-the-key") as c, pytest.raises(anthropic.AuthenticationError) as e:
        c.messages.create(model=MODEL, max_tokens=5, messages=ask("Hi"))

    assert e.value.status_code == 401
    assert e.value.body["error"] == {
        "type": "authentication_error",
        "message": "Invalid bearer token",
    }
    assert "x-api-key" not in str(e.value)
    assert e.value.request_id and e.value.request_id.startswith("req_")
    assert e.value.body["request_id"] == e.value.request_id


def test_an_unknown_model_is_a_404(sim):
    with sdk(sim.url) as c, pytest.raises(anthropic.NotFoundError) as e:
        c.messages.create(model="claude-9", max_tokens=5, messages=ask("Hi"))
    assert e.value.status_code == 404
    assert e.value.body["error"]["type"] == "not_found_error"
    assert "claude-9" in e.value.body["error"]["message"]


def test_max_tokens_over_4096_is_a_400(sim):
    with sdk(sim.url) as c, pytest.raises(anthropic.BadRequestError) as e:
        c.messages.create(model=MODEL, max_tokens=5000, messages=ask("Hi"))
    assert e.value.status_code == 400
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "max_tokens: 5000 > 4096" in e.value.body["error"]["message"]


def test_a_burst_past_the_rate_limit_is_a_429_with_retry_after():
    # One request a minute, a bucket of one: the second request at once is refused.
    running = start_in_thread(SimulatorConfig(latency_ms=0, rpm=1, api_key=TEST_KEY))
    try:
        with sdk(running.url) as c:
            c.messages.create(model=MODEL, max_tokens=5, messages=ask("Hi [sim:tokens=1]"))
            with pytest.raises(anthropic.RateLimitError) as e:
                c.messages.create(model=MODEL, max_tokens=5, messages=ask("Hi [sim:tokens=1]"))
    finally:
        running.stop()

    assert e.value.status_code == 429
    assert e.value.body["error"]["type"] == "rate_limit_error"
    headers = e.value.response.headers
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["anthropic-ratelimit-requests-limit"] == "1"
    assert running.app.stats.rate_limited == 1
    assert running.app.stats.credentials == {"bearer": 2}


def test_an_injected_429_carries_its_retry_after(sim):
    with sdk(sim.url) as c, pytest.raises(anthropic.RateLimitError) as e:
        c.messages.create(
            model=MODEL, max_tokens=5, messages=ask("Hi [sim:error=429] [sim:retry-after=7]")
        )
    assert e.value.response.headers["retry-after"] == "7"


def test_an_overloaded_upstream_is_a_529(sim):
    with sdk(sim.url) as c, pytest.raises(anthropic.OverloadedError) as e:
        c.messages.create(model=MODEL, max_tokens=5, messages=ask("Hi [sim:error=529]"))
    assert e.value.status_code == 529
    assert e.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert e.value.request_id and e.value.request_id.startswith("req_")


def test_an_overloaded_error_inside_a_stream_raises_from_the_stream(sim):
    prompt = "Hi [sim:tokens=8] [sim:midstream-error=overloaded_error@3]"
    texts: list[str] = []
    with sdk(sim.url) as c, pytest.raises(anthropic.APIStatusError) as e:
        with c.messages.stream(model=MODEL, max_tokens=100, messages=ask(prompt)) as stream:
            texts.extend(stream.text_stream)
    assert len(texts) == 3  # what came before the error event was delivered
    assert reply_text(prompt, tokens=8).startswith("".join(texts))
    assert e.value.body["error"]["type"] == "overloaded_error"


# --- the headers themselves, over plain HTTP -----------------------------------------------
def post(url: str, headers: dict[str, str]) -> httpx.Response:
    body = {"model": MODEL, "max_tokens": 5, "messages": ask("Hi [sim:tokens=2]")}
    return httpx.post(f"{url}/v1/messages", json=body, headers=headers, timeout=10)


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"x-api-key": TEST_KEY}, 200, None),
        ({"authorization": f"Bearer {TEST_KEY}"}, 200, None),
        ({"authorization": f"bearer {TEST_KEY}"}, 200, None),  # the scheme is case-blind
        # Both sent: one that matches is enough, whichever it is.
        ({"x-api-key": "sk-wrong", "authorization": f"Bearer {TEST_KEY}"}, 200, None),
        ({"x-api-key": TEST_KEY, "authorization": "Bearer sk-wrong"}, 200, None),
        ({"x-api-key": "sk-wrong"}, 401, "invalid x-api-key"),
        ({"authorization": "Bearer sk-wrong"}, 401, "Invalid bearer token"),
        ({}, 401, "x-api-key header is required"),
        ({"authorization": f"Basic {TEST_KEY}"}, 401, "x-api-key header is required"),
        ({"authorization": "Bearer"}, 401, "x-api-key header is required"),
    ],
)
def test_either_header_carries_the_key(sim, headers, status, message):
    response = post(sim.url, {"anthropic-version": "2023-06-01", **headers})
    assert response.status_code == status
    assert response.headers["request-id"].startswith("req_")
    if message:
        assert response.json()["error"] == {"type": "authentication_error", "message": message}


@pytest.mark.parametrize(
    ("version", "status"),
    [
        ("2023-06-01", 200),
        (SDK_VERSION_HEADER, 200),
        (None, 200),  # left out: let through (curl, benchmarks)
        ("latest", 400),
        ("2023-6-1", 400),
        ("2023-02-30", 400),
        ("", 400),
    ],
)
def test_any_date_is_an_anthropic_version_and_nothing_else(sim, version, status):
    headers = {"x-api-key": TEST_KEY}
    if version is not None:
        headers["anthropic-version"] = version
    response = post(sim.url, headers)
    assert response.status_code == status
    if status == 400:
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["message"].startswith("anthropic-version:")


def test_an_injected_401_speaks_of_the_header_the_key_came_in(sim):
    body = {"model": MODEL, "max_tokens": 5, "messages": ask("Hi [sim:error=401]")}
    answers = [
        httpx.post(f"{sim.url}/v1/messages", json=body, headers=h, timeout=10).json()
        for h in ({"x-api-key": TEST_KEY}, {"authorization": f"Bearer {TEST_KEY}"})
    ]
    assert [a["error"]["message"] for a in answers] == ["invalid x-api-key", "Invalid bearer token"]


# --- a server that takes only one of the two ---------------------------------------------
@pytest.fixture(scope="module")
def bearer_only() -> Iterator[RunningSimulator]:
    running = start_in_thread(SimulatorConfig(latency_ms=0, api_key=TEST_KEY, auth="bearer"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def key_header_only() -> Iterator[RunningSimulator]:
    running = start_in_thread(SimulatorConfig(latency_ms=0, api_key=TEST_KEY, auth="x-api-key"))
    yield running
    running.stop()


def test_the_sdk_works_against_a_server_that_takes_only_bearer(bearer_only):
    with sdk(bearer_only.url) as c:
        message = c.messages.create(model=MODEL, max_tokens=5, messages=ask("Hi [sim:tokens=2]"))
    assert message.stop_reason == "end_turn"
    refused = post(bearer_only.url, {"x-api-key": TEST_KEY})
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == (
        "Authorization header with a Bearer token is required"
    )


def test_a_server_that_takes_only_x_api_key_refuses_the_sdk(key_header_only):
    """The control: the mode is real, and the SDK really sends no x-api-key."""
    with sdk(key_header_only.url) as c, pytest.raises(anthropic.AuthenticationError) as e:
        c.messages.create(model=MODEL, max_tokens=5, messages=ask("Hi"))
    assert e.value.body["error"]["message"] == "x-api-key header is required"
    assert key_header_only.app.stats.credentials == {"bearer": 1}


def test_an_unknown_auth_mode_is_refused_at_once():
    from llm.simulator import Simulator

    with pytest.raises(ValueError, match="auth must be one of"):
        Simulator(SimulatorConfig(auth="basic"))
