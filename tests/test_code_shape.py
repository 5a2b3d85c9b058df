"""The app's code stays in pieces a reader can hold: no function over 60 lines, no module of
conversations/ over 400. Counted with `ast`, from a function's `def` line to the last line
of its body (decorators not counted), over the app packages only (tests, bench and
migrations are not app code)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_PACKAGES = ["accounts", "billing", "chatsite", "conversations", "llm", "ops", "support"]
MAX_FUNCTION_LINES = 60
MAX_CONVERSATIONS_MODULE_LINES = 400

# Functions that may stay longer, by path and name.
LONG_FUNCTIONS_ALLOWED = {
    # The simulator's stream loop: one event after another as the real API sends them,
    # easier to check against the API's documentation whole than in pieces.
    ("llm/simulator/app.py", "_stream"),
}


def app_modules() -> list[Path]:
    modules = []
    for package in APP_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.relative_to(ROOT).parts:
                modules.append(path)
    return modules


def function_lengths(path: Path) -> list[tuple[str, int, int]]:
    """(name, first line, length) of every function and method in a module, nested
    ones too."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        (node.name, node.lineno, (node.end_lineno or node.lineno) - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def test_the_walk_finds_the_app() -> None:
    found = {path.relative_to(ROOT).as_posix() for path in app_modules()}
    assert "billing/meter.py" in found
    assert "llm/simulator/app.py" in found
    assert not any("/migrations/" in path for path in found)


def test_no_function_is_over_60_lines() -> None:
    offenders = []
    for path in app_modules():
        relative = path.relative_to(ROOT).as_posix()
        for name, line, length in function_lengths(path):
            if length > MAX_FUNCTION_LINES and (relative, name) not in LONG_FUNCTIONS_ALLOWED:
                offenders.append(f"{relative}:{line} {name} ({length} lines)")
    assert not offenders, f"Functions over {MAX_FUNCTION_LINES} lines: " + ", ".join(offenders)


def test_the_allowed_long_functions_still_exist() -> None:
    # An allowance for a function that has been renamed or removed would silently let
    # the next long function of that name through.
    for relative, name in LONG_FUNCTIONS_ALLOWED:
        names = {found for found, _, _ in function_lengths(ROOT / relative)}
        assert name in names, f"{relative} has no function {name}: drop it from the list"


def test_no_conversations_module_is_over_400_lines() -> None:
    offenders = []
    for path in sorted((ROOT / "conversations").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if "/migrations/" in relative:
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_CONVERSATIONS_MODULE_LINES:
            offenders.append(f"{relative} ({lines} lines)")
    assert not offenders, (
        f"Modules of conversations/ over {MAX_CONVERSATIONS_MODULE_LINES} lines: "
        + ", ".join(offenders)
    )
