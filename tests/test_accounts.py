"""Sign up, sign in, sign out; the first account is the administrator."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import Client

from billing.models import ServiceSettings

PASSWORD = "a-long-passphrase-42"


def signup(client: Client, username: str):
    return client.post(
        "/accounts/signup/",
        {"username": username, "password1": PASSWORD, "password2": PASSWORD},
    )


def test_the_first_account_becomes_the_admin_and_later_ones_do_not():
    first = signup(Client(), "alice")
    assert first.status_code == 302 and first["Location"] == "/"
    second = signup(Client(), "bob")
    assert second.status_code == 302
    users = {u.username: u for u in get_user_model().objects.all()}
    assert users["alice"].is_staff and users["alice"].is_superuser
    assert not users["bob"].is_staff and not users["bob"].is_superuser


def test_signing_up_signs_you_in():
    client = Client()
    signup(client, "alice")
    assert client.get("/").status_code == 200


def test_a_bad_signup_says_what_is_wrong_and_creates_nothing():
    response = Client().post(
        "/accounts/signup/", {"username": "alice", "password1": "x", "password2": "y"}
    )
    assert response.status_code == 200
    assert b"didn\xe2\x80\x99t match" in response.content or b"match" in response.content
    assert not get_user_model().objects.exists()


def test_an_admin_can_close_signup_but_never_before_the_first_account():
    ServiceSettings.objects.create(signup_open=False)
    assert signup(Client(), "alice").status_code == 302  # the first account, the admin
    closed = signup(Client(), "bob")
    assert closed.status_code == 403
    assert b"Sign-up is closed" in closed.content
    assert get_user_model().objects.count() == 1


def test_sign_in_and_sign_out(alice):
    client = Client()
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": "alice-password-1"}
    )
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    client.post("/accounts/logout/")
    assert client.get("/").status_code == 302


def test_a_wrong_password_is_refused(alice):
    response = Client().post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
