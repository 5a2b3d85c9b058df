"""Search: every word must be in the title or the text of a conversation (in any order,
in any of its messages), and each result shows a piece of the text with the words marked,
escaped. SQLite matches word by word; PostgreSQL uses its full-text search."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html import unescape

import pytest
from django.test import Client

from conversations.selectors import mark_words, search_words, snippet

from .browser import ROOT
from .search_data import QUERY, make_conversations

SEPARATOR = "\n" + "=" * 20 + "\n"
FOUND = ["France, <b>capital</b> of cheese", "Geography homework", "Markup"]


def results(page: str) -> list[tuple[str, str]]:
    """(title, snippet) of each result on a search page, as HTML."""
    hits = re.findall(
        r'<li class="search-hit"><a href="[^"]+">(.*?)</a>'
        r'.*?(?:<p class="snippet">(.*?)</p>)?</li>',
        page,
        re.S,
    )
    return [(title, text) for title, text in hits]


def text_of(html: str) -> str:
    return unescape(re.sub(r"</?mark>", "", html))


def check_search_page(page: str) -> None:
    hits = dict(results(page))
    assert sorted(text_of(title) for title in hits) == sorted(FOUND)
    assert "Trip to France" not in page and "Bob" not in page
    assert "<b>" not in page and "<script>alert" not in page and "<img" not in page
    # The title and the snippets show the words marked, whatever their case.
    title = next(t for t in hits if "cheese" in t)
    assert "<mark>France</mark>" in title and "<mark>capital</mark>" in title
    assert "&lt;b&gt;" in title
    homework = next(s for t, s in hits.items() if "Geography" in t)
    assert "<mark>capital</mark> of <mark>France</mark> since 987" in homework
    markup = next(s for t, s in hits.items() if "Markup" in t)
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt; the <mark>capital</mark> of <mark>france</mark>"
        in markup
    )
    assert "&lt;img src=x&gt;" in markup


def test_capital_france_finds_every_conversation_with_both_words_on_sqlite(alice):
    make_conversations()
    web = Client()
    web.force_login(alice)
    page = web.get("/conversations/", {"q": QUERY}).content.decode()
    check_search_page(page)
    # SQLite: newest first.
    assert [text_of(title) for title, _ in results(page)] == list(reversed(FOUND))
    reversed_words = web.get("/conversations/", {"q": "FRANCE, capital?"}).content.decode()
    assert [t for t, _ in results(reversed_words)] == [t for t, _ in results(page)]
    nothing = web.get("/conversations/", {"q": "capital Germany"}).content.decode()
    assert "Nothing matches." in nothing


def test_capital_france_finds_every_conversation_with_both_words_on_postgresql(postgres_url):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(DATABASE_URL=postgres_url, DEBUG="true", LOG_LEVEL="WARNING")

    def run(*args: str) -> str:
        return subprocess.run(
            [sys.executable, *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        ).stdout

    run("manage.py", "migrate", "-v0")
    queries = [QUERY, "france CAPITAL", "capitals", "capital Germany"]
    out = run("tests/scripts/search_page.py", *queries)
    page, reversed_words, longer, neither = out.split(SEPARATOR)
    check_search_page(page)
    assert sorted(results(reversed_words)) == sorted(results(page))
    assert "Nothing matches." in longer  # a word matches the words it begins, not shorter ones
    assert "Nothing matches." in neither
    # Ranked: the title holding both words comes first.
    assert text_of(results(page)[0][0]) == FOUND[0]


def test_search_words_and_snippets():
    assert search_words("  capital,France?? capital ") == ["capital", "France"]
    assert search_words("?!") == []
    assert mark_words("a <i>Capital</i> idea", ["capital"]) == (
        "a &lt;i&gt;<mark>Capital</mark>&lt;/i&gt; idea"
    )
    long = " ".join(f"word{n}" for n in range(100)) + " the capital " + "tail " * 100
    piece = snippet(long, ["capital"])
    assert piece.startswith("…") and piece.endswith("…") and "<mark>capital</mark>" in piece
    assert len(text_of(piece)) <= 170
    assert snippet("capital", ["capital"]) == "<mark>capital</mark>"


@pytest.mark.parametrize("query", ["", "   ", "%", "_"])
def test_a_search_without_words_finds_nothing(alice, query):
    make_conversations()
    web = Client()
    web.force_login(alice)
    assert results(web.get("/conversations/", {"q": query}).content.decode()) == []
