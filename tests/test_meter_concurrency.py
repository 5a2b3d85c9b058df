"""No race overspends: 50 turns at once, across two processes, on PostgreSQL and SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "scripts" / "meter_race.py"
TURN_COST = 900  # micro-dollars: 100 input tokens and 400 output tokens of claude-4-6


def _env(database_url: str, user_cap: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DATABASE_URL=database_url,
        USER_DAILY_CAP_USD=str(user_cap / 1_000_000),
        MIN_USEFUL_OUTPUT_TOKENS="400",  # no shortened replies: each turn costs 900 or nothing
        LOG_LEVEL="WARNING",
    )
    return env


def _manage(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def race(database_url: str, tmp_path: Path, *, processes: int, threads: int) -> tuple[int, int]:
    cap = 10 * TURN_COST  # the budget covers ten turns
    env = _env(database_url, cap)
    _manage(env, "migrate", "-v0")
    _manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        "User.objects.create_user('alice', password='x')",
    )
    start = tmp_path / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), str(threads), str(start)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    start.touch()
    granted = refused = 0
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0
        g, r = map(int, out.split())
        granted, refused = granted + g, refused + r
    totals = _manage(
        env,
        "shell",
        "-c",
        (
            "from billing.models import DailySpend, UsageRecord\n"
            "from django.db.models import Sum\n"
            "u = DailySpend.objects.get(scope__startswith='user:')\n"
            "s = DailySpend.objects.get(scope='service')\n"
            "ledger = UsageRecord.objects.aggregate(t=Sum('charged_micros'))['t']\n"
            "print(u.spent_micros, u.reserved_micros, s.spent_micros, ledger)"
        ),
    )
    spent, reserved, service_spent, ledger = map(int, totals.split()[-4:])
    assert spent <= cap, f"overspent: {spent} > {cap}"
    assert reserved == 0
    assert spent == service_spent == ledger == granted * TURN_COST
    return granted, refused


def test_fifty_turns_across_two_processes_on_postgresql_never_overspend(postgres_url, tmp_path):
    granted, refused = race(postgres_url, tmp_path, processes=2, threads=25)
    assert (granted, refused) == (10, 40)


def test_fifty_turns_across_two_processes_on_sqlite_never_overspend(tmp_path):
    granted, refused = race(
        f"sqlite:///{tmp_path / 'race.sqlite3'}", tmp_path, processes=2, threads=25
    )
    assert (granted, refused) == (10, 40)
