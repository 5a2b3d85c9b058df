"""The site's own pages: friendly 403 and 404 in the app's layout (DEBUG on and off), the
favicon, and the product's name on the sign-in and sign-up pages."""

from __future__ import annotations

import re
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from conversations.models import Conversation


def client_for(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture(params=[False, True], ids=["debug-off", "debug-on"])
def debug(request, settings):  # type: ignore[no-untyped-def]
    settings.DEBUG = request.param
    return request.param


def without_token(page: str) -> str:
    return re.sub(r'"X-CSRFToken": "[^"]+"', "", page)


def assert_friendly(page: str, status: str) -> None:
    assert "Chat for claude-4-6" in page  # the product's name, in the app's layout
    assert 'href="/"' in page and "Back to the chat" in page
    assert f'<p class="error-code">{status}</p>' in page
    assert "chat.css" in page
    # Nothing of Django's own pages.
    assert "Forbidden" not in page and "Page not found at" not in page
    assert "URLconf" not in page and "DEBUG = True" not in page


def test_a_plain_user_on_support_gets_a_friendly_403(alice, debug):
    response = client_for(alice).get("/support/")
    assert response.status_code == 403
    page = response.content.decode()
    assert_friendly(page, "403")
    assert "You cannot open this page" in page


@pytest.mark.parametrize(
    "path",
    [
        f"/c/{uuid.uuid4()}/",  # an id that does not exist
        "/c/not-an-id/",  # an address no pattern matches
        f"/c/{uuid.uuid4()}/export.md",
    ],
)
def test_an_unknown_conversation_is_a_friendly_404(alice, debug, path):
    response = client_for(alice).get(path)
    assert response.status_code == 404
    page = response.content.decode()
    assert_friendly(page, "404")
    assert "This page does not exist" in page


def test_another_users_conversation_is_the_same_friendly_404(alice, bob, debug):
    mine = Conversation.objects.create(owner=alice, model="claude-4-6", title="Alice's secret")
    response = client_for(bob).get(mine.get_absolute_url())
    assert response.status_code == 404
    page = response.content.decode()
    assert "Alice's secret" not in page
    unknown = client_for(bob).get(f"/c/{uuid.uuid4()}/").content.decode()
    assert without_token(page) == without_token(unknown)  # nothing tells the two apart


def test_the_favicon_answers_at_its_usual_address(debug):
    response = Client().get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert "max-age=86400" in response["Cache-Control"]
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert body.startswith(b"<svg")


def test_the_sign_in_page_shows_the_product_name(settings):
    page = Client().get("/accounts/login/").content.decode()
    assert '<p class="brand">' in page and "Chat for claude-4-6" in page
    assert "<title>Sign in · Chat for claude-4-6</title>" in page
    settings.SITE_NAME = "Acme <Chat>"
    page = Client().get("/accounts/login/").content.decode()
    assert "Acme &lt;Chat&gt;" in page and "Acme <Chat>" not in page


def test_the_first_sign_up_says_it_becomes_the_administrator(alice):
    get_user_model().objects.all().delete()
    first = Client().get("/accounts/signup/").content.decode()
    assert "The first account becomes the administrator." in first
    assert "Chat for claude-4-6" in first
    get_user_model().objects.create_user("bob", password="bob-password-1")
    later = Client().get("/accounts/signup/").content.decode()
    assert "The first account becomes the administrator." not in later
