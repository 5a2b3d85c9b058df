"""Build `sprite.svg`: the Lucide icons the app uses, as <symbol>s of one file.

The icons come from the npm package `lucide-static` (ISC, see LICENSE beside this file),
whose `icons/NAME.svg` files this reads; nothing else of the package is kept:

    npm pack lucide-static@1.62.0 && tar xzf lucide-static-1.62.0.tgz
    python static/vendor/lucide/build_sprite.py package/icons

To add an icon: put its name in ICONS and run it again. Templates draw one with
`{% icon "name" %}` (conversations/templatetags/icons.py).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

VERSION = "1.62.0"
ICONS = [
    "archive", "archive-restore", "arrow-up", "chart-column", "check", "chevron-down",
    "circle-alert", "clock", "copy", "cpu", "download", "ellipsis", "fast-forward", "file-json",
    "file-text", "info", "languages", "layout-dashboard", "log-out", "menu", "message-square",
    "panel-left", "pencil", "play", "plus", "refresh-cw", "rotate-ccw", "search", "settings",
    "shield", "sparkles", "square", "square-pen", "trash-2", "wallet", "x",
]  # fmt: skip
BODY = re.compile(r"<svg[^>]*>(.*)</svg>", re.S)


def main(icons_dir: Path) -> None:
    symbols = []
    for name in ICONS:
        body = BODY.search((icons_dir / f"{name}.svg").read_text())
        assert body, name
        inner = "\n".join("    " + line.strip() for line in body.group(1).strip().splitlines())
        symbols.append(f'  <symbol id="{name}" viewBox="0 0 24 24">\n{inner}\n  </symbol>')
    out = Path(__file__).with_name("sprite.svg")
    out.write_text(
        f"<!-- lucide-static v{VERSION} - ISC: see LICENSE. Built by build_sprite.py. -->\n"
        '<svg xmlns="http://www.w3.org/2000/svg" fill="none" stroke="currentColor" '
        'stroke-width="2" stroke-linecap="round" stroke-linejoin="round">\n'
        + "\n".join(symbols)
        + "\n</svg>\n"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
