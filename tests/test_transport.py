"""Transport limits: oversized, malformed, binary and badly encoded websocket messages get
a clear error (or a clean close) and the socket, or at least the server, stays usable;
memory stays flat; HTTP bodies are capped.

First over the ASGI application with WebsocketCommunicator, then against `manage.py serve`
in a process of its own, for what only a real server shows: its frame size limit, UTF-8
validation and memory."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import websockets
from django.conf import settings
from django.test import Client
from websockets.exceptions import ConnectionClosed

from conversations.models import Conversation

from .browser import SIMULATED_CLAUDE, served
from .conftest import receive_until, send_frame
from .test_process_death import sign_up
from .ws_helpers import (
    DONE,
    ERROR,
    assert_alive,
    connected,
    finish_generations,
    ledger,
    probe,
    still_stored,
    stored_conversation,
)

UNREADABLE = "That message could not be read."
UNKNOWN = "Unknown request."
EMPTY = "Type a message first."
TOO_LARGE = "That message is too large to send."


# --- over the ASGI application ------------------------------------------------------------


async def test_a_message_over_the_limit_is_refused_and_the_socket_stays_usable(alice, alice_cookie):
    comm = await connected(alice_cookie)
    limit = settings.WS_MAX_MESSAGE_CHARS
    # A well-formed send whose frame is one character over the limit.
    envelope = send_frame("", "big1")
    padding = limit + 1 - len(envelope)
    await comm.send_to(text_data=send_frame("x" * padding, "big1"))
    frame = await comm.receive_from()
    assert ERROR in frame and TOO_LARGE in frame
    # Neither the text nor anything else came back or was stored.
    assert "xxxxxxxxxx" not in frame
    assert (await ledger(alice)).messages == []
    await comm.send_to(text_data="y" * (limit * 4))
    assert TOO_LARGE in await comm.receive_from()
    await comm.send_to(text_data=send_frame("Still here? [sim:tokens=3]", "ok1"))
    await receive_until(comm, DONE)
    await comm.disconnect()
    assert [role for role, _ in (await ledger(alice)).messages] == ["user", "assistant"]


DEEP = "[" * 30_000 + "]" * 30_000  # within the size limit, deeper than any parser recurses
MALFORMED = {
    "not json": ("{not json", UNREADABLE),
    "truncated": ('{"type": "send", "message": "hi', UNREADABLE),
    "empty frame": ("", UNREADABLE),
    "json array": ("[1, 2]", UNREADABLE),
    "json number": ("42", UNREADABLE),
    "json string": ('"subscribe"', UNREADABLE),
    "json null": ("null", UNREADABLE),
    "json true": ("true", UNREADABLE),
    "deeply nested array": (DEEP, UNREADABLE),
    "deeply nested object": ('{"a":' * 10_000 + "1" + "}" * 10_000, UNREADABLE),
    "deep inside a send": (
        '{"type": "send", "client_id": "d1", "message": ' + DEEP + "}",
        UNREADABLE,
    ),
    "nested just parseable": (
        '{"type": "send", "client_id": "d2", "message": ' + "[" * 500 + "]" * 500 + "}",
        EMPTY,
    ),
    "unknown type": ('{"type": "dance"}', UNKNOWN),
    "no type": ('{"message": "hi", "client_id": "t0"}', UNKNOWN),
    "type is a list": ('{"type": ["send"], "message": "hi", "client_id": "t1"}', UNKNOWN),
    "type is an object": ('{"type": {"send": 1}, "message": "hi", "client_id": "t2"}', UNKNOWN),
    "type is a number": ('{"type": 1, "message": "hi", "client_id": "t3"}', UNKNOWN),
    "type is null": ('{"type": null}', UNKNOWN),
    "type in other case": ('{"type": "SEND", "message": "hi", "client_id": "t4"}', UNKNOWN),
    "type with a NUL": ('{"type": "send\\u0000", "message": "hi", "client_id": "t5"}', UNREADABLE),
    "empty text": ('{"type": "send", "message": "", "client_id": "e1"}', EMPTY),
    "whitespace only": ('{"type": "send", "message": " \\n\\t\\u3000 ", "client_id": "e2"}', EMPTY),
    "no text": ('{"type": "send", "client_id": "e3"}', EMPTY),
    "lone surrogate in the text": (
        '{"type": "send", "message": "hi \\ud800 there", "client_id": "s1"}',
        UNREADABLE,
    ),
    "lone surrogate in the type": ('{"type": "\\udfff"}', UNREADABLE),
    "lone surrogate in a key": ('{"type": "stop", "\\ud800": 1}', UNREADABLE),
    "surrogate pair is fine": (
        '{"type": "send", "message": " \\ud83d\\ude00 "}',
        "could not be sent",
    ),
    "lone surrogate in the model": (
        '{"type": "send", "message": "hi", "client_id": "s2", "model": "\\ud83d"}',
        UNREADABLE,
    ),
    "NUL in the text": ('{"type": "send", "message": "a\\u0000b", "client_id": "z1"}', UNREADABLE),
    "NUL in an id": ('{"type": "stop", "reply": "1\\u0000"}', UNREADABLE),
    "duplicate keys": ('{"type": "stop", "type": "dance"}', UNKNOWN),
}


async def send_text(comm, raw: str) -> None:  # type: ignore[no-untyped-def]
    """A text frame as a server passes it (send_to refuses an empty one)."""
    await comm.send_input({"type": "websocket.receive", "text": raw})


@pytest.mark.parametrize(("raw", "expected"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_messages_get_a_clear_error_and_the_socket_stays_usable(
    alice, alice_cookie, raw, expected
):
    stored = await stored_conversation(alice)
    before = await ledger(alice)
    comm = await connected(alice_cookie)
    await send_text(comm, raw)
    frame = await comm.receive_from()
    assert ERROR in frame and expected in frame, frame
    await assert_alive(comm)
    await probe(comm, stored.reply_ids[-1])
    await comm.disconnect()
    assert await ledger(alice) == before
    assert await still_stored(stored) == stored.contents


async def test_many_bad_messages_in_a_row_leave_the_socket_usable(alice, alice_cookie):
    comm = await connected(alice_cookie)
    for raw, expected in MALFORMED.values():
        await send_text(comm, raw)
        assert expected in await comm.receive_from()
    await comm.send_input({"type": "websocket.receive", "bytes": b"\xff\xfe\x00"})
    assert "Messages must be text." in await comm.receive_from()
    await comm.send_to(text_data=send_frame("After all that [sim:tokens=3]", "after1"))
    await receive_until(comm, DONE)
    await comm.disconnect()
    await finish_generations()


@pytest.mark.parametrize(
    "data", [b"", b"\x00", b'{"type": "subscribe"}', b"\xff" * 100_000], ids=repr
)
async def test_binary_frames_are_refused_clearly(alice, alice_cookie, data):
    stored = await stored_conversation(alice)
    comm = await connected(alice_cookie)
    # As a server passes it (send_to refuses an empty frame).
    await comm.send_input({"type": "websocket.receive", "bytes": data})
    frame = await comm.receive_from()
    assert ERROR in frame and "Messages must be text." in frame
    await probe(comm, stored.reply_ids[0])
    await comm.disconnect()


# --- HTTP bodies --------------------------------------------------------------------------

OVERSIZED = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1024


def form_posts(conversation: Conversation) -> dict[str, str]:
    """The app's forms that take a POST body, by name."""
    base = conversation.get_absolute_url()
    return {
        "login": "/accounts/login/",
        "signup": "/accounts/signup/",
        "rename": f"{base}rename/",
        "settings": f"{base}settings/",
    }


@pytest.mark.parametrize("form", ["login", "signup", "rename", "settings"])
def test_an_oversized_form_post_is_a_400_not_a_500(alice, form):
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE <= 2_621_440  # Django's default or less
    conversation = Conversation.objects.create(owner=alice, model="claude-4-6", title="Kept")
    url = form_posts(conversation)[form]
    client = Client(enforce_csrf_checks=False)
    if form in ("rename", "settings"):
        client.force_login(alice)
    assert client.get(url).status_code in (200, 405), "the form's URL is wrong"
    body = "title=" + "a" * OVERSIZED
    response = client.post(url, data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code in (400, 413)
    conversation.refresh_from_db()
    assert conversation.title == "Kept"


# --- against a real server ----------------------------------------------------------------


@dataclass
class Server:
    name: str  # which server `serve` runs: daphne or uvicorn
    url: str
    pid: int
    session: str
    log: str
    max_message: int  # bytes: the largest websocket message the server takes

    @property
    def ws(self) -> str:
        return self.url.replace("http", "ws", 1) + "/ws/chat/"

    def connect(self, **options: object):  # type: ignore[no-untyped-def]
        return websockets.connect(
            self.ws,
            origin=self.url,
            additional_headers={"Cookie": f"sessionid={self.session}"},
            **options,  # type: ignore[arg-type]
        )

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")


# The largest websocket message each server takes, as `serve` runs it: 4 bytes for each
# character the app accepts, on both.
MAX_MESSAGE = {
    "daphne": settings.WS_MAX_MESSAGE_CHARS * 4,
    "uvicorn": settings.WS_MAX_MESSAGE_CHARS * 4,
}


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One `manage.py serve` process (the simulator inside) for this module's tests: the
    laptop's daphne, and the uvicorn that serves production's workers."""
    name = request.param
    tmp = tmp_path_factory.mktemp(f"transport-{name}")
    # One person sends every turn of the module: more than the default 20 a minute.
    env = {**SIMULATED_CLAUDE, "SIMULATOR_LATENCY_MS": "1", "USER_RPM": "1000"}
    with served(tmp, "--server", name, **env) as app:
        yield Server(
            name,
            app.url,
            app.proc.pid,
            sign_up(app.url),
            str(tmp / "serve.log"),
            MAX_MESSAGE[name],
        )
        assert app.proc.poll() is None, "the server died"


async def answers(server: Server, client_id: str) -> str:
    """Another client still gets a whole reply from the server (in a new conversation,
    whose id this returns)."""
    conversation = ""
    async with server.connect() as socket:
        await socket.send(send_frame(f"Are you there? {client_id} [sim:tokens=3]", client_id))
        async with asyncio.timeout(20):
            while True:
                frame = await socket.recv()
                if 'data-conversation="' in frame:
                    conversation = frame.split('data-conversation="')[1].split('"')[0]
                if DONE in frame:
                    return conversation


async def next_error(socket) -> str:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(10):
        while True:
            frame = await socket.recv()
            if ERROR in frame:
                return frame


def test_real_server_refuses_an_oversized_message_and_stays_usable(server):
    async def scenario() -> None:
        async with server.connect(max_size=None) as socket:
            # Over the app's limit, under daphne's frame limit: the app's clear error.
            await socket.send(send_frame("x" * settings.WS_MAX_MESSAGE_CHARS, "big1"))
            assert TOO_LARGE in await next_error(socket)
            await socket.send("{not json")
            assert UNREADABLE in await next_error(socket)
            await socket.send(send_frame("Next one works [sim:tokens=3]", "big2"))
            async with asyncio.timeout(20):
                while DONE not in await socket.recv():
                    pass

    asyncio.run(scenario())


async def send_huge(server: Server, size: int, *, fragments: int = 1) -> int:
    """Send one text message of `size` bytes (in `fragments` frames); the close code the
    client saw (1006: the server dropped the connection without a close frame)."""
    chunk = "x" * (size // fragments)
    try:
        async with server.connect(max_size=None, open_timeout=10, close_timeout=5) as socket:
            if fragments == 1:
                await socket.send(chunk)
            else:
                await socket.send(iter([chunk] * fragments))
            async with asyncio.timeout(10):
                frame = await socket.recv()
            raise AssertionError(f"a {size}-byte message was taken: {frame[:200]}")
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else 1006


# Past its limit a server fails the connection: uvicorn (the websockets library) closes
# with 1009, "message too big"; daphne (autobahn, 1 MiB by default) drops the TCP
# connection (its server default failByDrop), which the client sees as 1006.
CLOSED_TOO_BIG = {1006, 1009}
CLOSED_BAD_UTF8 = {1006, 1007}


def test_real_server_closes_on_a_huge_message_memory_stays_flat_and_it_serves_others(server):
    """20 messages of 5 MB, as one frame or as 80 fragments: each connection is closed at
    the server's limit. A fragmented one has buffered up to that limit by then, and daphne
    holds a dropped connection (and its buffer) until it reaps it, seconds later: the
    bound is that limit per message, plus slack."""

    async def scenario() -> tuple[list[int], int, int]:
        await answers(server, "warm")
        for n in range(4):  # warm up the allocator and whatever is cached per connection
            await send_huge(server, 5 * 1024 * 1024, fragments=1 + n % 2 * 79)
        before, codes = server.rss_kib(), []
        for n in range(20):  # one 5 MB frame, or 80 fragments of 64 KiB
            codes.append(await send_huge(server, 5 * 1024 * 1024, fragments=1 + n % 2 * 79))
        after = server.rss_kib()
        await answers(server, "after")
        return codes, before, after

    codes, before, after = asyncio.run(scenario())
    print(f"{server.name} RSS before {before} KiB, after 20 x 5 MB: {after} KiB")
    assert set(codes) <= CLOSED_TOO_BIG, codes
    bound = 20 * server.max_message // 1024 + 10 * 1024
    assert after - before < bound, f"{server.name}: RSS grew from {before} to {after} KiB"


def test_real_server_memory_stays_flat_for_messages_the_app_refuses(server):
    # Under daphne's limit, over the app's: each reaches the consumer and gets the error.
    size = 200 * 1024
    assert settings.WS_MAX_MESSAGE_CHARS < size < server.max_message

    async def scenario() -> tuple[int, int]:
        async with server.connect(max_size=None) as socket:
            for _ in range(3):
                await socket.send("x" * size)
                assert TOO_LARGE in await next_error(socket)
            before = server.rss_kib()
            for _ in range(20):
                await socket.send("x" * size)
                assert TOO_LARGE in await next_error(socket)
            after = server.rss_kib()
        await answers(server, "after-200k")
        return before, after

    before, after = asyncio.run(scenario())
    print(f"{server.name} RSS before {before} KiB, after 20 x 200 KiB: {after} KiB")
    assert after - before < 30 * 1024, f"RSS grew from {before} to {after} KiB"


class RawSocket:
    """A websocket client over a plain TCP socket, to send frames no library would."""

    def __init__(self, server: Server) -> None:
        host, port = server.url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /ws/chat/ HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: {server.url}\r\nCookie: sessionid={server.session}\r\n\r\n"
            ).encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            assert chunk, f"the handshake was refused: {response!r}"
            response += chunk
        assert response.startswith(b"HTTP/1.1 101"), response

    @staticmethod
    def header(opcode: int, length: int, mask: bytes) -> bytes:
        """A final frame's header, masked as a client's must be."""
        if length < 126:
            size = bytes([0x80 | length])
        elif length < 1 << 16:
            size = bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            size = bytes([0x80 | 127]) + struct.pack("!Q", length)
        return bytes([0x80 | opcode]) + size + mask

    def send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(self.header(opcode, len(payload), mask) + masked)

    def outcome(self, timeout: float = 10) -> int:
        """How the server ended the connection: a close frame's code, or 1006 when it
        dropped it. Frames before that (none are expected) fail the test."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return 1006
        except TimeoutError:
            raise AssertionError(f"the server kept the connection for {timeout}s") from None
        if not data:
            return 1006
        assert data[0] == 0x88, f"a frame, not a close: {data[:200]!r}"
        return int(struct.unpack("!H", data[2:4])[0])

    def close(self) -> None:
        self.sock.close()


def test_real_server_refuses_a_huge_frame_from_its_header_alone(server):
    """A frame announcing 5 MB is refused before its payload is read: the server does not
    wait for (or buffer) what the client says it will send."""
    raw = RawSocket(server)
    try:
        raw.sock.sendall(RawSocket.header(0x1, 5 * 1024 * 1024, os.urandom(4)))
        assert raw.outcome(timeout=5) in CLOSED_TOO_BIG
    finally:
        raw.close()
    asyncio.run(answers(server, "after-header"))


@pytest.mark.parametrize(
    "payload",
    [b'{"type": "send", "message": "\xff\xfe"}', b"\xc3\x28", b"\xed\xa0\x80", b"ok\xf0\x9f"],
    ids=["0xff in json", "bad continuation", "encoded surrogate", "truncated emoji"],
)
def test_real_server_closes_on_invalid_utf8_and_keeps_serving_others(server, payload):
    raw = RawSocket(server)
    try:
        raw.send_frame(0x1, payload)  # a text frame whose bytes are not UTF-8
        assert raw.outcome() in CLOSED_BAD_UTF8
    finally:
        raw.close()
    asyncio.run(answers(server, f"after-utf8-{len(payload)}"))


def test_real_server_answers_binary_and_malformed_frames_with_errors(server):
    async def scenario() -> None:
        async with server.connect() as socket:
            await socket.send(b"\x00\x01\x02")
            assert "Messages must be text." in await next_error(socket)
            for raw, expected in MALFORMED.values():
                await socket.send(raw)
                assert expected in await next_error(socket), raw[:80]
            await socket.send(send_frame("Still usable [sim:tokens=3]", "mal1"))
            async with asyncio.timeout(20):
                while DONE not in await socket.recv():
                    pass

    asyncio.run(scenario())


def test_real_server_refuses_oversized_http_bodies_without_a_500(server):
    body = "username=alice&password=" + "a" * OVERSIZED
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.get("/accounts/login/")
        token = client.cookies["csrftoken"]
        response = client.post(
            "/accounts/login/",
            content=f"csrfmiddlewaretoken={token}&{body}",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Referer": server.url + "/accounts/login/",
            },
        )
        assert response.status_code in (400, 413)
        headers = {"Referer": server.url + "/accounts/login/"}

        def chunked() -> Iterator[bytes]:  # no Content-Length to check up front
            yield f"csrfmiddlewaretoken={token}&username=alice&password=".encode()
            for _ in range(OVERSIZED // 65536 + 1):
                yield b"a" * 65536

        response = client.post(
            "/accounts/login/",
            content=chunked(),
            headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code in (400, 413)
        fields = {"csrfmiddlewaretoken": token, "username": "alice"}
        response = client.post(
            "/accounts/login/",
            data={**fields, "password": "a" * OVERSIZED},
            files={"f": ("f.txt", b"x")},
            headers=headers,
        )
        assert response.status_code in (400, 413)
        # A file part is not counted by DATA_UPLOAD_MAX_MEMORY_SIZE (Django would spool it
        # to disk): the whole body's cap (HTTP_MAX_BODY_BYTES) refuses it, declared or
        # chunked.
        too_big = b"x" * (settings.HTTP_MAX_BODY_BYTES + 1)
        response = client.post(
            "/accounts/login/",
            data={**fields, "password": "wrong"},
            files={"f": ("big.bin", too_big)},
            headers=headers,
        )
        assert response.status_code == 413

        def chunked_file() -> Iterator[bytes]:
            for start in range(0, len(too_big), 65536):
                yield too_big[start : start + 65536]

        response = client.post(
            "/accounts/login/",
            content=chunked_file(),
            headers={**headers, "Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 413
        # Under the cap, the same form still works (a wrong password is the form's answer).
        response = client.post(
            "/accounts/login/", data={**fields, "password": "wrong"}, headers=headers
        )
        assert response.status_code == 200
        # Signed in, the forms of a conversation of one's own refuse too.
        client.cookies.set("sessionid", server.session)
        conversation = asyncio.run(answers(server, "http1"))
        title = client.get(f"/c/{conversation}/").text
        for path in (f"/c/{conversation}/rename/", f"/c/{conversation}/settings/"):
            response = client.post(
                path,
                content=f"csrfmiddlewaretoken={token}&title=" + "a" * OVERSIZED,
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Referer": server.url + "/",
                },
            )
            assert response.status_code in (400, 413), (path, response.status_code)
        assert "<title>" in title
        assert (
            title.split("<title>")[1].split("</title>")[0] in client.get(f"/c/{conversation}/").text
        )  # nothing renamed
    with open(server.log, encoding="utf-8", errors="replace") as log:
        assert "Internal Server Error" not in log.read()
