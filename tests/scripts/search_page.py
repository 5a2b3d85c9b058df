"""Run by test_search in a process of its own against the database DATABASE_URL names
(PostgreSQL): makes the search test's conversations and prints alice's search page for
each query given (pages separated by a line of "=")."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402

from tests.search_data import make_conversations  # noqa: E402


def main(queries: list[str]) -> None:
    make_conversations()
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(get_user_model().objects.get(username="alice"))
    pages = []
    for query in queries:
        response = client.get("/conversations/", {"q": query})
        assert response.status_code == 200, response.status_code
        pages.append(response.content.decode())
    print(("\n" + "=" * 20 + "\n").join(pages))


if __name__ == "__main__":
    main(sys.argv[1:])
