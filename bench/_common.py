"""What the benchmarks share: a free port, and a signed-up person's session."""

from __future__ import annotations

import socket

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sign_up(url: str, username: str = "bench") -> str:
    """Sign up on the app at `url` as the page does; the session cookie."""
    with httpx.Client(base_url=url) as client:
        client.get("/accounts/signup/")
        password = "bench-passphrase-42"
        client.post(
            "/accounts/signup/",
            data={
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
                "username": username,
                "password1": password,
                "password2": password,
            },
            headers={"Referer": url + "/accounts/signup/"},
        )
        return client.cookies["sessionid"]
