"""Production settings, as a real server answers: HTTPS only, security headers on every
response, cookies that never travel in the clear or to scripts.

The server runs with DEBUG off behind a (pretend) TLS proxy: it trusts X-Forwarded-Proto.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from http.cookies import SimpleCookie

import httpx
import pytest

from .browser import ROOT, served

SECURE = {"X-Forwarded-Proto": "https"}
HEADERS = {
    "strict-transport-security": "max-age=31536000; includeSubDomains; preload",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "x-frame-options": "DENY",
}


@pytest.fixture
def production(tmp_path, redis_url):
    env = {
        "DEBUG": "false",
        "SECRET_KEY": "p" * 20 + "-a-long-random-looking-production-secret-0123456789",
        "ALLOWED_HOSTS": "127.0.0.1",
        "TRUST_X_FORWARDED_PROTO": "true",
        "REDIS_URL": redis_url,
        "STATIC_ROOT": str(tmp_path / "static"),
    }
    # As a deployment does (the Dockerfile too): hashed, compressed static files first.
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
    )
    with served(tmp_path, **env) as app:
        yield app.url


class Browser:
    """Just enough of a browser over a TLS proxy: keeps cookies itself (they are Secure,
    so an http:// client library would rightly not send them) and sends the Origin."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.origin = url.replace("http://", "https://")
        self.cookies: dict[str, str] = {}
        self.set_cookies: list[str] = []

    def request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = {**SECURE, "Origin": self.origin, "Referer": self.origin + path}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = httpx.request(method, self.url + path, headers=headers, timeout=10, **kwargs)
        for raw in response.headers.get_list("set-cookie"):
            self.set_cookies.append(raw)
            for name, morsel in SimpleCookie(raw).items():
                self.cookies[name] = morsel.value
        return response

    def form_token(self, path: str) -> str:
        page = self.request("GET", path)
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]


def test_every_response_carries_the_security_headers(production):
    browser = Browser(production)
    token = browser.form_token("/accounts/signup/")
    signed_up = browser.request(
        "POST",
        "/accounts/signup/",
        data={
            "csrfmiddlewaretoken": token,
            "username": "alice",
            "password1": "a-long-pass-phrase-1",
            "password2": "a-long-pass-phrase-1",
        },
    )
    assert signed_up.status_code == 302, signed_up.text[:500]
    responses = {
        "chat": browser.request("GET", "/"),
        "list": browser.request("GET", "/conversations/"),
        "usage": browser.request("GET", "/usage/"),
        "a missing page": browser.request("GET", "/no-such-page/"),
        "admin": browser.request("GET", "/admin/"),
        "sign-in": Browser(production).request("GET", "/accounts/login/"),
        "health": browser.request("GET", "/healthz"),
    }
    assert responses["chat"].status_code == 200 and "New chat" in responses["chat"].text
    assert responses["a missing page"].status_code == 404
    for name, response in responses.items():
        for header, value in HEADERS.items():
            assert response.headers.get(header) == value, (name, header)
        assert "default-src 'self'" in response.headers.get("content-security-policy", ""), name
        assert "Traceback" not in response.text, name

    # Cookies: Secure always; the session's unreadable by scripts; none sent cross-site.
    assert {c.split("=", 1)[0] for c in browser.set_cookies} >= {"csrftoken", "sessionid"}
    for raw in browser.set_cookies:
        flags = raw.lower()
        assert "; secure" in flags and "samesite=lax" in flags, raw.split("=", 1)[0]
        if raw.startswith("sessionid="):
            assert "; httponly" in flags


def test_plain_http_is_sent_to_https_except_the_health_checks(production):
    plain = httpx.get(production + "/accounts/login/", timeout=10)
    assert plain.status_code == 301
    assert plain.headers["location"] == production.replace("http://", "https://") + (
        "/accounts/login/"
    )
    assert httpx.get(production + "/healthz", timeout=10).status_code == 200
