"""Fuzzing with hypothesis: random and malformed input never crashes a worker, never loses
a stored message, and always gets an answer the app chose.

(a) The websocket protocol: random JSON objects with the known `type`s and random field
    values, random text and random bytes, sent by a signed-in user who has a conversation
    with stored messages. After each example the consumer has not raised, still answers a
    known-good subscribe, and every stored message is there as it was.
(b) The anthropic provider's SSE parsing: a real HTTP server on loopback answers
    POST /v1/messages with generated bodies (valid events with random fields, truncated
    events, garbage lines, bad JSON, unknown events, no message_stop, wrong headers). The
    provider yields only its typed events, ending in exactly one StreamEnd or StreamError.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm.anthropic import AnthropicConfig, AnthropicProvider
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

from .conftest import TEST_KEY
from .ws_helpers import (
    Stored,
    assert_alive,
    connected,
    finish_generations,
    probe,
    still_stored,
    stored_conversation,
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- values -------------------------------------------------------------------------------

# Text of every kind, lone surrogates and NUL included (JSON's \u escapes carry them).
any_text = st.text(
    alphabet=st.characters(codec=None, exclude_categories=()), max_size=30
) | st.sampled_from(["", " ", "\x00", "\ud800", "<script>alert(1)</script>", "' OR 1=1 --"])
numbers = (
    st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, -1, 2**63, 2**64, 10**30, 1.5, 1e308])
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | any_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(any_text, children, max_size=3)
    ),
    max_leaves=6,
)
TYPES = ["subscribe", "resume", "send", "stop", "retry", "continue", "regenerate", "edit"]


def ids_of(stored: Stored, others: Stored) -> st.SearchStrategy[object]:
    """Ids that lead somewhere (mine, someone else's), as numbers and as text, and junk."""
    real: list[object] = [
        str(stored.conversation.pk),
        str(others.conversation.pk),
        *stored.user_ids,
        *stored.reply_ids,
        *others.reply_ids,
    ]
    real += [str(pk) for pk in real if isinstance(pk, int)]
    return st.sampled_from(real) | json_values


def payloads(stored: Stored, others: Stored) -> st.SearchStrategy[dict[str, object]]:
    ids = ids_of(stored, others)
    texts = any_text | st.sampled_from(["Hello [sim:tokens=2]", "  \n "]) | json_values
    return st.fixed_dictionaries(
        {"type": st.sampled_from(TYPES) | json_values},
        optional={
            "conversation": ids,
            "reply": ids,
            "message": ids | texts,
            "text": texts,
            "client_id": st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z") | json_values,
            "after": numbers | json_values,
            "resume": st.dictionaries(ids.map(str), numbers | json_values, max_size=4)
            | json_values,
            "model": st.sampled_from(["claude-4-6", "local", "no-such-model"]) | json_values,
            "role": st.sampled_from(["assistant", "system", "user"]) | json_values,
            "owner": json_values,
            "cost_micros": numbers,
        },
    )


@dataclass
class Frame:
    text: str | None = None
    data: bytes | None = None


def frames(stored: Stored, others: Stored) -> st.SearchStrategy[Frame]:
    as_json = payloads(stored, others).map(lambda p: Frame(text=json.dumps(p)))
    truncated = st.tuples(payloads(stored, others), st.integers(min_value=0)).map(
        lambda pair: Frame(text=json.dumps(pair[0])[: pair[1] % (len(json.dumps(pair[0])) + 1)])
    )
    return st.one_of(
        as_json,
        as_json,
        truncated,
        json_values.map(lambda v: Frame(text=json.dumps(v))),
        st.text(max_size=200).map(lambda t: Frame(text=t)),
        st.binary(max_size=200).map(lambda b: Frame(data=b)),
    )


# --- (a) the websocket protocol -----------------------------------------------------------


async def check_example(cookie: str, stored: Stored, others: Stored, sent: list[Frame]) -> None:
    comm = await connected(cookie)
    try:
        for frame in sent:
            # As a server passes frames on (send_to would refuse an empty one).
            if frame.data is not None:
                await comm.send_input({"type": "websocket.receive", "bytes": frame.data})
            else:
                await comm.send_input({"type": "websocket.receive", "text": frame.text})
        await probe(comm, stored.reply_ids[0])
        await assert_alive(comm)
    finally:
        await comm.disconnect()
    assert await still_stored(stored) == stored.contents
    assert await still_stored(others) == others.contents


def test_fuzz_the_websocket_protocol(alice, alice_cookie, bob):
    # One event loop for every example: a turn a random `send` starts goes on running
    # (and is stopped and settled at the end), as it would in a server.
    loop = asyncio.new_event_loop()
    stored = loop.run_until_complete(stored_conversation(alice, turns=3))
    others = loop.run_until_complete(stored_conversation(bob, turns=1))

    # The strategy needs the stored ids, so it is built inside the test.
    @FUZZ
    @given(sent=st.lists(frames(stored, others), min_size=1, max_size=4))
    def example(sent: list[Frame]) -> None:
        loop.run_until_complete(check_example(alice_cookie, stored, others, sent))
        ran.append(len(sent))

    ran: list[int] = []
    try:
        example()
    finally:
        loop.run_until_complete(finish_generations())
        loop.close()
    print(f"{len(ran)} examples, {sum(ran)} frames")
    assert len(ran) >= FUZZ.max_examples // 2


# --- (b) the provider's SSE parsing -------------------------------------------------------


@dataclass
class Answer:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        answer: Answer = self.server.answer  # type: ignore[attr-defined]
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for chunk in answer.chunks:
                self.wfile.write(chunk)
                self.wfile.flush()
        except OSError:
            pass  # the client gave up first: fine
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    server.answer = Answer()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


EVENT_NAMES = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
]
ERROR_TYPES = ["overloaded_error", "api_error", "rate_limit_error", "invalid_request_error"]
counts = st.none() | numbers | st.booleans() | any_text
usage = st.fixed_dictionaries(
    {},
    optional={
        "input_tokens": counts,
        "output_tokens": counts,
        "cache_read_input_tokens": counts,
        "cache_creation_input_tokens": counts,
    },
)


def sse_data() -> st.SearchStrategy[dict[str, object]]:
    """The data of Anthropic's events, with random values where the fields go."""
    return st.one_of(
        st.fixed_dictionaries(
            {
                "type": st.just("message_start"),
                "message": st.fixed_dictionaries(
                    {}, optional={"model": json_values, "usage": usage | json_values}
                )
                | json_values,
            }
        ),
        st.fixed_dictionaries(
            {
                "type": st.just("content_block_delta"),
                "delta": st.fixed_dictionaries(
                    {"type": st.sampled_from(["text_delta", "thinking_delta"]) | json_values},
                    optional={"text": any_text | json_values},
                )
                | json_values,
            }
        ),
        st.fixed_dictionaries(
            {
                "type": st.just("message_delta"),
                "delta": st.fixed_dictionaries({}, optional={"stop_reason": json_values})
                | json_values,
                "usage": usage | json_values,
            }
        ),
        st.fixed_dictionaries(
            {
                "type": st.just("error"),
                "error": st.fixed_dictionaries(
                    {},
                    optional={
                        "type": st.sampled_from(ERROR_TYPES) | json_values,
                        "message": json_values,
                        "details": json_values,
                    },
                )
                | json_values,
            }
        ),
        st.fixed_dictionaries({"type": st.sampled_from(EVENT_NAMES) | any_text}),
        st.dictionaries(any_text, json_values, max_size=3),
    )


def event_block(name: str, data: str) -> str:
    return f"event: {name}\ndata: {data}\n\n"


sse_blocks = st.one_of(
    st.tuples(st.sampled_from(EVENT_NAMES) | any_text, sse_data()).map(
        lambda pair: event_block(pair[0], json.dumps(pair[1]))
    ),
    st.tuples(st.sampled_from(EVENT_NAMES), json_values).map(
        lambda pair: event_block(pair[0], json.dumps(pair[1]))
    ),
    st.sampled_from(EVENT_NAMES).map(lambda name: event_block(name, "{not json")),
    st.sampled_from(EVENT_NAMES).map(lambda name: event_block(name, "[" * 5000 + "]" * 5000)),
    st.sampled_from(EVENT_NAMES).map(lambda name: f"event: {name}\n\n"),
    st.text(max_size=80),  # garbage lines
    st.sampled_from([": comment\n", "retry: soon\n", "id: \x00\n", "data\n", "\r\n", "event:\n"]),
)


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    blocks = draw(st.lists(sse_blocks, max_size=12))
    if draw(st.booleans()):
        blocks.append(event_block("message_stop", '{"type": "message_stop"}'))
    body = "".join(blocks).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):  # truncated anywhere, even inside a character
        body = body[: draw(st.integers(min_value=0, max_value=len(body)))]
    if draw(st.integers(0, 9)) == 0:  # bytes that are not UTF-8
        body += draw(st.binary(min_size=1, max_size=20))
    headers = [
        (
            "content-type",
            draw(
                st.sampled_from(
                    [
                        "text/event-stream",
                        "text/event-stream; charset=utf-8",
                        "text/event-stream; charset=no-such-charset",
                        "application/json",
                        "text/html",
                    ]
                )
            ),
        )
    ]
    encoding = draw(st.sampled_from([None, None, None, "gzip", "gzip-broken", "identity"]))
    if encoding == "gzip":
        body = gzip.compress(body)
    if encoding is not None:
        headers.append(("content-encoding", encoding.removesuffix("-broken")))
    length = draw(st.sampled_from(["none", "exact", "exact", "too long"]))
    if length != "none":
        headers.append(("content-length", str(len(body) + (length == "too long") * 100)))
    status = draw(st.sampled_from([200] * 8 + [400, 429, 500, 529]))
    if status != 200:
        headers.append(("retry-after", draw(st.sampled_from(["1", "-5", "soon", "nan", "0"]))))
    cut = sorted(draw(st.lists(st.integers(0, max(0, len(body))), max_size=4)))
    pieces = [body[a:b] for a, b in zip([0, *cut], [*cut, len(body)], strict=True)]
    return Answer(status, headers, [piece for piece in pieces if piece])


def assert_well_formed(events: list[Event]) -> None:
    assert events, "the provider yielded nothing"
    *body, last = events
    assert isinstance(last, StreamEnd | StreamError), last
    for event in body:
        assert isinstance(event, StreamStarted | TextDelta | Usage), event
    for event in events:
        if isinstance(event, TextDelta):
            assert isinstance(event.text, str) and event.text
        elif isinstance(event, Usage):
            for count in (event.input_tokens, event.output_tokens):
                assert count is None or (type(count) is int and count >= 0), event
        elif isinstance(event, StreamStarted):
            assert isinstance(event.request_id, str) and isinstance(event.model, str)
        elif isinstance(event, StreamEnd):
            assert isinstance(event.stop_reason, str) and event.stop_reason
        elif isinstance(event, StreamError):
            assert isinstance(event.kind, ErrorKind) and isinstance(event.message, str)
            assert event.status is None or isinstance(event.status, int)
            assert event.retry_after is None or event.retry_after >= 0


async def stream_once(url: str) -> list[Event]:
    provider = AnthropicProvider(AnthropicConfig(base_url=url, api_key=TEST_KEY, read_timeout=5))
    request = ChatRequest(model="claude-4-6", messages=[ChatMessage("user", "Hi")], max_tokens=16)
    try:
        return [event async for event in provider.stream(request)]
    finally:
        await provider.aclose()


@settings(max_examples=150, deadline=None)
@given(answer=answers())
def test_fuzz_the_providers_sse_parsing(upstream, answer):
    upstream.answer = answer
    url = f"http://127.0.0.1:{upstream.server_address[1]}"
    assert_well_formed(asyncio.run(stream_once(url)))


def test_a_well_formed_stream_through_the_fuzz_server_is_parsed_whole(upstream):
    """The fuzz server itself works: a valid stream gives text, usage and a normal end."""
    blocks = [
        event_block(
            "message_start",
            json.dumps({"type": "message_start", "message": {"usage": {"input_tokens": 3}}}),
        ),
        event_block(
            "content_block_delta",
            json.dumps(
                {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hé"}}
            ),
        ),
        event_block(
            "message_delta",
            json.dumps(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 1},
                }
            ),
        ),
        event_block("message_stop", '{"type": "message_stop"}'),
    ]
    body = "".join(blocks).encode()
    upstream.answer = Answer(
        200, [("content-type", "text/event-stream")], [body[:7], body[7:100], body[100:]]
    )
    events = asyncio.run(stream_once(f"http://127.0.0.1:{upstream.server_address[1]}"))
    assert_well_formed(events)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["hé"]
    assert events[-1] == StreamEnd("end_turn")
    assert [e for e in events if isinstance(e, Usage)][-1] == Usage(3, 1)


HOSTILE = {
    # What the fuzzing found (each raised out of the provider before the fix).
    "delta is a number": (
        event_block("content_block_delta", '{"type": "content_block_delta", "delta": 0}'),
        "",
    ),
    "message is a list": (
        event_block("message_start", '{"type": "message_start", "message": []}'),
        "",
    ),
    "usage is a list": (
        event_block("message_delta", '{"type": "message_delta", "delta": {}, "usage": [1]}'),
        "",
    ),
    "error is text": (event_block("error", '{"type": "error", "error": "boom"}'), ""),
    "nested too deep": (event_block("message_start", "[" * 5000 + "]" * 5000), ""),
    "gzip that is not": ("event: ping\ndata: {}\n\n", "gzip"),
    # Values the parser must not pass on as they are.
    "text is a number": (
        event_block(
            "content_block_delta",
            '{"type": "content_block_delta", "delta": {"type": "text_delta", "text": 7}}',
        ),
        "",
    ),
    "negative and huge counts": (
        event_block(
            "message_delta",
            '{"type": "message_delta", "delta": {"stop_reason": ["end_turn"]},'
            ' "usage": {"input_tokens": -5, "output_tokens": 100000000000000000000}}',
        ),
        "",
    ),
}


@pytest.mark.parametrize(("body", "encoding"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_streams_found_by_fuzzing_end_in_a_typed_event(upstream, body, encoding):
    headers = [("content-type", "text/event-stream")]
    if encoding:
        headers.append(("content-encoding", encoding))
    stop = event_block("message_stop", '{"type": "message_stop"}')
    upstream.answer = Answer(200, headers, [(body + stop).encode()])
    events = asyncio.run(stream_once(f"http://127.0.0.1:{upstream.server_address[1]}"))
    assert_well_formed(events)
    if encoding:
        assert isinstance(events[-1], StreamError) and events[-1].kind is ErrorKind.MALFORMED


async def test_an_unknown_long_stop_reason_is_kept_within_its_column(
    upstream, alice, alice_cookie, settings
):
    """A stop reason the upstream makes up, longer than the column (PostgreSQL would refuse
    it), ends the turn normally and is stored cut to fit."""
    from channels.db import database_sync_to_async

    from conversations.models import Message

    from .conftest import communicator, receive_until, send_frame

    reason = "a_stop_reason_nobody_has_heard_of_" * 4
    blocks = [
        event_block("message_start", json.dumps({"type": "message_start", "message": {}})),
        event_block(
            "content_block_delta",
            json.dumps(
                {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "ok"}}
            ),
        ),
        event_block(
            "message_delta",
            json.dumps({"type": "message_delta", "delta": {"stop_reason": reason}, "usage": {}}),
        ),
        event_block("message_stop", '{"type": "message_stop"}'),
    ]
    upstream.answer = Answer(
        200, [("content-type", "text/event-stream")], ["".join(blocks).encode()]
    )
    settings.ANTHROPIC_BASE_URL = f"http://127.0.0.1:{upstream.server_address[1]}"
    socket = communicator(alice_cookie)
    assert (await socket.connect())[0]
    await socket.send_to(text_data=send_frame("Hello", "long-reason"))
    await receive_until(socket, 'message--assistant" data-status="complete"')
    await socket.disconnect()
    reply = await database_sync_to_async(
        lambda: Message.objects.get(role="assistant", conversation__owner=alice)
    )()
    limit = Message._meta.get_field("stop_reason").max_length
    assert reply.content == "ok" and reply.stop_reason == reason[:limit]
