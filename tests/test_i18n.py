"""The interface in English and French: complete, current, chosen from the browser or by
the user, over HTTP and the websocket alike."""

from __future__ import annotations

import gettext
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.test import Client

from .conftest import HOST, ORIGIN, communicator, receive_until
from .test_conversation_features import client_for

ROOT = Path(__file__).resolve().parent.parent
PO = ROOT / "locale" / "fr" / "LC_MESSAGES" / "django.po"
MO = PO.with_suffix(".mo")
PLACEHOLDER = re.compile(r"%\(\w+\)s|\{\w+\}")


def po_entries(path: Path) -> dict[str, str]:
    sys.path.insert(0, str(ROOT / "locale"))
    try:
        from fill_po import FIELD, _unquote
    finally:
        sys.path.pop(0)
    entries = {}
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        assert "#, fuzzy" not in block, block
        fields: dict[str, list[str]] = {}
        current = None
        for line in block.splitlines():
            if match := FIELD.match(line):
                current = match.group(1)
                fields[current] = [match.group(2)]
            elif line.startswith('"') and current:
                fields[current].append(line)
        msgid = _unquote(fields["msgid"])
        if msgid:
            for key in [k for k in fields if k.startswith("msgstr")]:
                entries[f"{msgid}|{key}"] = _unquote(fields[key])
    return entries


def test_every_french_string_is_translated_with_the_same_placeholders():
    entries = po_entries(PO)
    assert len(entries) > 100
    for key, text in entries.items():
        msgid = key.split("|")[0]
        assert text, f"untranslated: {msgid}"
        assert sorted(PLACEHOLDER.findall(text)) == sorted(PLACEHOLDER.findall(msgid)), key


def test_the_catalog_is_current_and_compiled(tmp_path):
    """makemessages finds no string the .po lacks, and the committed .mo is the .po."""
    if not shutil.which("xgettext"):
        import pytest

        pytest.skip("xgettext (GNU gettext) is not installed")
    copy = tmp_path / "app"
    shutil.copytree(
        ROOT,
        copy,
        ignore=shutil.ignore_patterns(".venv", ".git", "tests", "bench", "static", "*.sqlite3*"),
    )
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "fr", "--no-location"],
        cwd=copy,
        check=True,
        capture_output=True,
    )
    fresh = {k.split("|")[0] for k in po_entries_loose(copy / PO.relative_to(ROOT))}
    ours = {k.split("|")[0] for k in po_entries(PO)}
    assert fresh <= ours, f"strings missing from the French catalog: {sorted(fresh - ours)}"
    compiled = gettext.GNUTranslations(MO.open("rb"))
    for key, text in po_entries(PO).items():
        msgid, field = key.split("|")
        if field == "msgstr":
            assert compiled.gettext(msgid) == text, f"the .mo is stale for {msgid!r}"


def po_entries_loose(path: Path) -> dict[str, str]:
    """Like po_entries, for a freshly made catalog (which may hold fuzzy guesses)."""
    text = path.read_text(encoding="utf-8").replace("#, fuzzy\n", "")
    loose = path.with_name("loose.po")
    loose.write_text(text, encoding="utf-8")
    return po_entries(loose)


def test_pages_follow_the_browser_then_the_users_choice(alice):
    web = client_for(alice)
    french = web.get("/", HTTP_ACCEPT_LANGUAGE="fr-FR,fr;q=0.9").content.decode()
    assert '<html lang="fr">' in french and "Nouvelle discussion" in french
    assert "Envoyer" in french and "Dépenses du jour" in french
    english = web.get("/", HTTP_ACCEPT_LANGUAGE="en-US").content.decode()
    assert '<html lang="en">' in english and "New chat" in english
    # The user's choice beats the browser's.
    web.post("/i18n/setlang/", {"language": "en", "next": "/"})
    chosen = web.get("/", HTTP_ACCEPT_LANGUAGE="fr-FR").content.decode()
    assert "New chat" in chosen and "Nouvelle discussion" not in chosen
    signed_out = Client().get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Connexion" in signed_out and "Mot de passe" in signed_out


async def test_the_websocket_speaks_the_pages_language(alice, alice_cookie):
    from channels.testing import WebsocketCommunicator

    from chatsite.asgi import application

    comm = WebsocketCommunicator(
        application,
        "/ws/chat/",
        headers=[
            (b"host", HOST.encode()),
            (b"origin", ORIGIN.encode()),
            (b"cookie", alice_cookie.encode()),
            (b"accept-language", b"fr-FR,fr;q=0.9"),
        ],
    )
    await comm.connect()
    await comm.send_to(text_data=json.dumps({"type": "nonsense"}))
    assert "Demande inconnue." in (await receive_until(comm, "chat-error"))[-1]
    await comm.send_to(
        text_data=json.dumps(
            {
                "type": "send",
                "message": "Salut [sim:error=401]",
                "client_id": "f1",
                "conversation": "",
            }
        )
    )
    frames = await receive_until(comm, 'data-status="failed"')
    await comm.disconnect()
    assert "L’assistant est indisponible pour le moment." in frames[-1]
    assert "sur 5,00\u00a0$ aujourd’hui" in frames[-1]  # Step 10: money in French
    # An English page's socket stays English.
    english = communicator(alice_cookie)
    await english.connect()
    await english.send_to(text_data=json.dumps({"type": "nonsense"}))
    assert "Unknown request." in (await receive_until(english, "chat-error"))[-1]
    await english.disconnect()
    assert settings.LANGUAGE_CODE == "en"
