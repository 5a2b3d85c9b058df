"""Fill a .po file's msgstr from a table of translations, keeping makemessages' layout.

When interface strings change:

    uv run manage.py makemessages -l fr --ignore=.venv --ignore=tests --ignore=bench \
        --ignore=static --no-location
    python locale/fill_po.py locale/fr/LC_MESSAGES/django.po locale/fr/translations.py
    uv run manage.py compilemessages --ignore=.venv

The table (`FR` in translations.py) maps a msgid to its msgstr, or a (singular, plural)
pair to a pair. Strings the table lacks are listed, and the test suite fails on them.
"""

from __future__ import annotations

import ast
import re
import sys

FIELD = re.compile(r'^(msgid_plural|msgid|msgstr(?:\[\d\])?) (".*")$')


def _unquote(lines: list[str]) -> str:
    return "".join(ast.literal_eval(line) for line in lines)


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def fill(po: str, table: dict) -> tuple[str, list[str]]:
    out, missing = [], []
    for block in po.split("\n\n"):
        fields: dict[str, list[str]] = {}
        current = None
        head: list[str] = []
        for line in block.splitlines():
            match = FIELD.match(line)
            if match:
                current = match.group(1)
                fields[current] = [match.group(2)]
            elif line.startswith('"') and current:
                fields[current].append(line)
            elif line.startswith("#") and "fuzzy" not in line:
                head.append(line)
        msgid = _unquote(fields.get("msgid", ['""']))
        if not msgid:  # the header
            out.append(block.replace("#, fuzzy\n", ""))
            continue
        if "msgid_plural" in fields:
            plural = _unquote(fields["msgid_plural"])
            found = table.get((msgid, plural))
            if found is None:
                missing.append(msgid)
                found = ("", "")
            lines = [
                *head,
                f"msgid {_quote(msgid)}",
                f"msgid_plural {_quote(plural)}",
                f"msgstr[0] {_quote(found[0])}",
                f"msgstr[1] {_quote(found[1])}",
            ]
        else:
            found = table.get(msgid)
            if found is None:
                missing.append(msgid)
                found = ""
            lines = [*head, f"msgid {_quote(msgid)}", f"msgstr {_quote(found)}"]
        out.append("\n".join(lines))
    return "\n\n".join(out).rstrip() + "\n", missing


if __name__ == "__main__":
    po_path, table_path = sys.argv[1], sys.argv[2]
    namespace: dict = {}
    with open(table_path, encoding="utf-8") as source:
        exec(source.read(), namespace)  # a table of strings we wrote ourselves
    with open(po_path, encoding="utf-8") as po:
        text, missing = fill(po.read(), namespace["FR"])
    with open(po_path, "w", encoding="utf-8") as po:
        po.write(text)
    for msgid in missing:
        print("untranslated:", msgid)
