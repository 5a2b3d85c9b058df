"""Run by test_meter_concurrency in a process of its own: N threads race to reserve and
settle turns for one user against the database DATABASE_URL names. Prints how many
reservations were granted and refused, as "granted refused"."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402

from billing import meter  # noqa: E402
from billing.models import CatalogModel  # noqa: E402


def main(threads: int, start_file: str) -> None:
    user = get_user_model().objects.get(username="alice")
    model = CatalogModel.objects.get(slug="claude-4-6")
    granted = refused = 0
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def turn() -> None:
        nonlocal granted, refused
        barrier.wait()
        # Both processes start together: wait for the test to create this file.
        while not os.path.exists(start_file):
            pass
        try:
            grant = meter.reserve(user=user, model=model, input_tokens=100, max_tokens=400)
        except meter.Refused:
            with lock:
                refused += 1
        else:
            # Used all it reserved: 100 in + 400 out = 900 micro-dollars.
            meter.settle(
                reservation_id=grant.reservation_id,
                attempts=[meter.Attempt(input_tokens=100, output_tokens=400, outcome="complete")],
            )
            with lock:
                granted += 1
        finally:
            connection.close()

    workers = [threading.Thread(target=turn) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(granted, refused)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
