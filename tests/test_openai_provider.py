"""The OpenAI-compatible provider against a real server on loopback: llama-cpp-python's own
server serving the bundled SmolLM2 model."""

from __future__ import annotations

import subprocess
import sys

import pytest

from llm.base import (
    ChatMessage,
    ChatRequest,
    ErrorKind,
    StreamEnd,
    StreamError,
    StreamStarted,
    TextDelta,
    Usage,
)
from llm.local import bundled_model_path
from llm.openai import OpenAIConfig, OpenAIProvider

from .browser import free_port, wait_for_port

KEY = "sk-openai-compatible-test"


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    port = free_port()
    log = (tmp_path_factory.mktemp("oai") / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            bundled_model_path(),
            "--model_alias",
            "smollm2",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--api_key",
            KEY,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def ask(text: str, max_tokens: int) -> ChatRequest:
    return ChatRequest(
        model="smollm2",
        messages=[ChatMessage("user", text)],
        max_tokens=max_tokens,
        temperature=0.0,
    )


async def collect(url: str, request: ChatRequest, key: str = KEY) -> list:
    provider = OpenAIProvider(OpenAIConfig(base_url=url, api_key=key))
    try:
        return [event async for event in provider.stream(request)]
    finally:
        await provider.aclose()


async def test_it_streams_a_reply_to_its_natural_end(server_url):
    events = await collect(server_url, ask("What is the capital of France?", 60))
    assert isinstance(events[0], StreamStarted)
    # It answered (what a 135M model answers is its business, not this test's).
    assert len("".join(e.text for e in events if isinstance(e, TextDelta)).split()) >= 3
    assert events[-1] == StreamEnd(stop_reason="end_turn")


async def test_length_is_reported_as_a_cut_off(server_url):
    events = await collect(server_url, ask("Tell me a long story.", 5))
    assert events[-1] == StreamEnd(stop_reason="max_tokens")
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert 1 <= len(deltas) <= 5
    # The request asks for usage; servers that send it have it read (cumulative).
    usages = [e for e in events if isinstance(e, Usage)]
    assert all(u.output_tokens is None or u.output_tokens <= 5 for u in usages)


async def test_a_wrong_key_is_an_authentication_error(server_url):
    events = await collect(server_url, ask("Hi", 5), key="sk-wrong")
    assert len(events) == 1 and isinstance(events[0], StreamError)
    assert (events[0].status, events[0].kind) == (401, ErrorKind.AUTHENTICATION)


async def test_an_unreachable_server_is_a_connection_error():
    events = await collect("http://127.0.0.1:9/v1", ask("Hi", 5))
    assert isinstance(events[0], StreamError) and events[0].kind is ErrorKind.CONNECTION


def test_it_asks_for_usage_in_the_stream():
    body = OpenAIProvider.body(
        ChatRequest(
            model="m", messages=[ChatMessage("user", "hi")], max_tokens=9, system="be brief"
        )
    )
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert body["max_tokens"] == 9
