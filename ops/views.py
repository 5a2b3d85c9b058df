"""Health and metrics: /healthz (the process answers), /readyz (it can serve: database,
channel layer, model provider), /metrics (Prometheus, for staff or a bearer token)."""

from __future__ import annotations

import asyncio
import hmac
import os
import uuid

import httpx
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from billing import catalog


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


async def _channel_layer_roundtrip() -> str:
    layer = get_channel_layer()
    channel = await layer.new_channel("readyz.")
    token = uuid.uuid4().hex
    await layer.send(channel, {"type": "readyz", "token": token})
    message = await asyncio.wait_for(layer.receive(channel), timeout=2)
    return "ok" if message.get("token") == token else "wrong message"


def _provider() -> str:
    model = catalog.get_model(catalog.default_model())
    if model is None:
        return "no default model"
    spec = catalog.spec_for(model)
    if spec.name == "local":
        return "ok" if os.path.exists(catalog.local_model_path()) else "model file missing"
    if not spec.base_url:
        return "not configured"
    # Reachable is enough: any HTTP answer (even 401 or 404) shows the server is there.
    httpx.get(spec.base_url, timeout=settings.LLM_CONNECT_TIMEOUT)
    return "ok"


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {}
    for name, check in [
        ("database", _database),
        ("channel_layer", async_to_sync(_channel_layer_roundtrip)),
        ("provider", _provider),
    ]:
        try:
            checks[name] = check()
        except Exception as exc:  # any failure is "not ready", said in words
            checks[name] = f"error: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse({"ready": ready, **checks}, status=200 if ready else 503)


def _allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(header, f"Bearer {token}"):
        return True
    return bool(request.user.is_authenticated and request.user.is_staff)


def metrics(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return HttpResponse("Forbidden\n", status=403, content_type="text/plain")
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
