"""Sign-in is throttled, tells nobody which accounts exist, and a socket lives no longer than
the sign-in that opened it.

alice has an account; "nobody" does not.
"""

from __future__ import annotations

import difflib
import re
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.test import Client

from .conftest import communicator

LOCKED = "Too many failed sign-in attempts"
WRONG = "Please enter a correct username and password"


def sign_in(client: Client, username: str, password: str, path: str = "/accounts/login/"):
    """What a person does: open the form, fill it in, press Sign in (CSRF checked)."""
    page = client.get(path)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert token, "the sign-in form carries a CSRF token"
    return client.post(
        path,
        {"csrfmiddlewaretoken": token[1], "username": username, "password": password},
    )


def web() -> Client:
    return Client(enforce_csrf_checks=True)


def test_sign_in_locks_at_the_limit_and_opens_after_the_cool_off(alice, settings):
    settings.AXES_COOLOFF_TIME = timedelta(seconds=2)
    client = web()
    for _ in range(django_settings.AXES_FAILURE_LIMIT - 1):
        response = sign_in(client, "alice", "wrong-password")
        assert response.status_code == 200 and WRONG in response.content.decode()
    locked = sign_in(client, "alice", "wrong-password")
    assert locked.status_code == 429
    assert LOCKED in locked.content.decode()
    # Locked means locked: the right password is refused too, and no session is made.
    refused = sign_in(client, "alice", "alice-password-1")
    assert refused.status_code == 429 and LOCKED in refused.content.decode()
    assert "_auth_user_id" not in client.session
    time.sleep(2.2)
    opened = sign_in(client, "alice", "alice-password-1")
    assert opened.status_code == 302 and opened["Location"] == "/"
    assert client.session["_auth_user_id"] == str(alice.pk)


def test_the_lock_is_per_person_and_address_and_a_success_resets_the_count(alice, bob):
    client = web()
    for _ in range(django_settings.AXES_FAILURE_LIMIT - 1):
        sign_in(client, "alice", "wrong-password")
    # One short of the limit, alice signs in: her count starts again.
    assert sign_in(client, "alice", "alice-password-1").status_code == 302
    again = web()
    for _ in range(django_settings.AXES_FAILURE_LIMIT - 1):
        assert sign_in(again, "alice", "wrong-password").status_code == 200
    # bob, from the same address, is not locked by alice's failures.
    assert sign_in(web(), "bob", "bob-password-1").status_code == 302


def test_known_and_unknown_usernames_get_the_same_answers(alice):
    def answers(username: str) -> list[tuple[int, str]]:
        client = web()
        seen = []
        for _ in range(django_settings.AXES_FAILURE_LIMIT + 1):
            response = sign_in(client, username, "wrong-password")
            body = response.content.decode()
            body = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", body)
            body = re.sub(r'"X-CSRFToken": "[^"]+"', "", body)  # CSRF tokens are masked anew
            seen.append((response.status_code, body.replace(username, "USERNAME")))
        return seen

    known, unknown = answers("alice"), answers("nobody")
    assert [status for status, _ in known] == [200] * (django_settings.AXES_FAILURE_LIMIT - 1) + [
        429,
        429,
    ]
    for (status, body), (other_status, other_body) in zip(known, unknown, strict=True):
        assert status == other_status
        assert body == other_body, "\n".join(
            difflib.unified_diff(body.splitlines(), other_body.splitlines(), lineterm="")
        )


def test_the_admin_sign_in_is_throttled_too(django_user_model):
    django_user_model.objects.create_superuser("root", password="root-password-1")
    client = web()
    for _ in range(django_settings.AXES_FAILURE_LIMIT):
        sign_in(client, "root", "wrong-password", path="/admin/login/")
    locked = sign_in(client, "root", "root-password-1", path="/admin/login/")
    assert locked.status_code == 429 and LOCKED in locked.content.decode()


# --- Live sockets follow the sign-in -----------------------------------------------------


def signed_in(user: object) -> tuple[Client, str]:
    """A browser session for `user`: its client and the cookie header its socket sends."""
    client = Client()
    client.force_login(user)  # type: ignore[arg-type]
    key = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    return client, f"{django_settings.SESSION_COOKIE_NAME}={key}"


async def test_signing_out_closes_that_sessions_socket_and_only_that_one(alice):
    laptop, laptop_cookie = await database_sync_to_async(signed_in)(alice)
    _phone, phone_cookie = await database_sync_to_async(signed_in)(alice)
    on_laptop, on_phone = communicator(laptop_cookie), communicator(phone_cookie)
    assert (await on_laptop.connect())[0] and (await on_phone.connect())[0]

    response = await database_sync_to_async(laptop.post)("/accounts/logout/")
    assert response.status_code == 302
    assert await on_laptop.receive_output(timeout=5) == {"type": "websocket.close", "code": 4003}
    # The phone's sign-in is another session: its socket stays and still answers.
    await on_phone.send_to(text_data='{"type": "subscribe", "conversation": "nope"}')
    assert "That conversation was not found." in await on_phone.receive_from()
    again = communicator(laptop_cookie)
    assert not (await again.connect())[0]  # the old cookie signs nobody in
    await on_phone.disconnect()


async def test_a_socket_whose_session_ended_is_refused_its_next_message(alice):
    """Even if the close never arrived (say, the session was deleted from the database by
    an admin), the next message finds the sign-in gone."""
    from django.contrib.sessions.models import Session

    _client, cookie = await database_sync_to_async(signed_in)(alice)
    socket = communicator(cookie)
    assert (await socket.connect())[0]
    await database_sync_to_async(lambda: Session.objects.all().delete())()
    await socket.send_to(text_data='{"type": "subscribe", "conversation": "nope"}')
    assert await socket.receive_output(timeout=3) == {"type": "websocket.close", "code": 4003}


async def test_a_password_change_ends_other_sockets_at_their_next_message(alice):
    _client, cookie = await database_sync_to_async(signed_in)(alice)
    socket = communicator(cookie)
    assert (await socket.connect())[0]

    def change_password() -> None:
        alice.set_password("a-new-password-2")
        alice.save()

    await database_sync_to_async(change_password)()
    await socket.send_to(text_data='{"type": "subscribe", "conversation": "nope"}')
    assert await socket.receive_output(timeout=3) == {"type": "websocket.close", "code": 4003}


@pytest.mark.parametrize("origin", ["https://evil.example", None, "null"])
async def test_cross_site_handshakes_are_refused_in_production_settings(alice, settings, origin):
    from channels.auth import AuthMiddlewareStack
    from channels.routing import URLRouter
    from channels.security.websocket import AllowedHostsOriginValidator
    from channels.testing import WebsocketCommunicator

    from conversations.routing import websocket_urlpatterns

    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["chat.example.org"]
    # As chatsite/asgi.py builds it; the validator reads ALLOWED_HOSTS when it is made.
    app = AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
    _client, cookie = await database_sync_to_async(signed_in)(alice)

    def socket(origin: str | None) -> WebsocketCommunicator:
        headers = [(b"cookie", cookie.encode()), (b"host", b"chat.example.org")]
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        return WebsocketCommunicator(app, "/ws/chat/", headers=headers)

    assert not (await socket(origin).connect())[0]
    welcome = socket("https://chat.example.org")
    assert (await welcome.connect())[0]
    await welcome.disconnect()
