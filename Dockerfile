# syntax=docker/dockerfile:1
# Build: dependencies into a virtual environment with uv, static files collected.
FROM python:3.11-slim AS build
# llama-cpp-python (the built-in local model) is compiled from source.
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/venv
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --no-install-project
COPY . .
# (Translations are committed compiled: locale/*/LC_MESSAGES/django.mo.)
RUN DEBUG=false SECRET_KEY=collectstatic-only /venv/bin/python manage.py collectstatic --noinput

# Run: a non-root user, only the environment and the app.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 chat
WORKDIR /app
COPY --from=build /venv /venv
COPY --from=build /app /app
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 STATIC_ROOT=/app/staticfiles
USER chat
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["python", "manage.py", "serve", "--host", "0.0.0.0", "--port", "8000"]
