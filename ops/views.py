"""Health and metrics: /healthz (the process answers), /readyz (it can serve: database,
channel layer, model provider), /metrics (Prometheus, for staff or a bearer token); and the
staff banner's Acknowledge button."""

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
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from billing import catalog

from . import alerts
from .models import Alert


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
    return HttpResponse(
        generate_latest(registry) + generate_latest(_open_alerts_registry()),
        content_type=CONTENT_TYPE_LATEST,
    )


class _OpenAlerts:
    """Open (unacknowledged) alerts by kind, read from the database at each scrape: the
    same figure whichever worker answers."""

    def collect(self):  # type: ignore[no-untyped-def]
        family = GaugeMetricFamily(
            "chat_alerts_open", "Alerts not acknowledged yet, by kind.", labels=["kind"]
        )
        open_by_kind = dict.fromkeys(Alert.Kind.values, 0)
        for kind in Alert.objects.filter(acknowledged_at__isnull=True).values_list(
            "kind", flat=True
        ):
            open_by_kind[kind] = open_by_kind.get(kind, 0) + 1
        for kind, count in sorted(open_by_kind.items()):
            family.add_metric([kind], count)
        yield family


def _open_alerts_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_OpenAlerts())  # type: ignore[arg-type]
    return registry


@require_POST
def acknowledge_alert(request: HttpRequest, alert_id: int) -> HttpResponse:
    """The banner's Acknowledge: closes the alert for every staff member, recording who and
    when. Anyone else gets the same 404 as for an alert that does not exist."""
    if not (request.user.is_authenticated and request.user.is_staff):
        raise Http404("No such alert")
    if not Alert.objects.filter(pk=alert_id).exists():
        raise Http404("No such alert")
    alerts.acknowledge(alert_id, request.user)  # type: ignore[arg-type]
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        back = "/"
    return HttpResponseRedirect(back)
