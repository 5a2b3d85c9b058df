"""Prometheus metrics. With several worker processes set PROMETHEUS_MULTIPROC_DIR (an
empty directory shared by them): /metrics then adds up every process's figures."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TURNS = Counter("chat_turns_total", "Turns ended, by outcome.", ["outcome"])
TOKENS = Counter("chat_tokens_total", "Tokens billed, by direction.", ["direction"])
SPEND = Counter("chat_spend_micros_total", "Micro-dollars charged.")
UPSTREAM_ERRORS = Counter(
    "chat_upstream_errors_total", "Failed upstream requests, by error kind.", ["kind"]
)
RETRIES = Counter("chat_upstream_retries_total", "Upstream requests that were retries.")
TTFT = Histogram(
    "chat_time_to_first_token_seconds",
    "From the request leaving to the first token.",
    buckets=(0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 13, 20, 30, 60),
)
BATCH_GAP = Histogram(
    "chat_batch_interval_seconds",
    "Time between two batches of one reply going out.",
    buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2, 5),
)
ACTIVE_STREAMS = Gauge(
    "chat_active_streams", "Replies being written now.", multiprocess_mode="livesum"
)
QUEUED = Gauge(
    "chat_queued_requests", "Requests waiting for an upstream slot.", multiprocess_mode="livesum"
)
ALERTS = Counter("chat_alerts_total", "Alert occurrences raised, by kind.", ["kind"])
ALERT_MAIL_FAILURES = Counter(
    "chat_alert_mail_failures_total", "Alert e-mails the mail server did not take (retried)."
)
