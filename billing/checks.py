"""Startup checks: a misconfiguration is reported at start, naming the setting to fix."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.db import DatabaseError

from .models import CatalogModel, Provider

_PROVIDER_SETTINGS: dict[str, list[tuple[str, str]]] = {
    Provider.ANTHROPIC: [
        ("ANTHROPIC_API_KEY", "the API key sent as x-api-key"),
        ("ANTHROPIC_BASE_URL", "the Messages API's base URL"),
    ],
    Provider.OPENAI: [("OPENAI_BASE_URL", "the server's base URL, up to and including /v1")],
    Provider.LOCAL: [],
}


@register("models")
def check_provider_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    provider = settings.LLM_PROVIDER
    if provider not in _PROVIDER_SETTINGS:
        return [
            Error(
                f"LLM_PROVIDER is {provider!r}; it must be one of "
                f"{', '.join(sorted(_PROVIDER_SETTINGS))}.",
                hint="Set LLM_PROVIDER to local, anthropic or openai.",
                id="billing.E001",
            )
        ]
    if provider == Provider.ANTHROPIC and settings.ANTHROPIC_SIMULATOR:
        return []  # `serve` starts the simulator and sets the URL and key itself.
    return [
        Error(
            f"LLM_PROVIDER is {provider!r} but {name} ({what}) is not set.",
            hint=f"Set the {name} environment variable.",
            id="billing.E002",
        )
        for name, what in _PROVIDER_SETTINGS[provider]
        if not getattr(settings, name)
    ]


@register("models")
def check_catalog(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    try:
        models = list(CatalogModel.objects.all())
    except DatabaseError:
        return []  # Not migrated yet: `serve` migrates, then checks again.
    errors: list[CheckMessage] = []
    slugs = {m.slug: m for m in models}
    default = slugs.get(settings.LLM_MODEL)
    if default is None:
        errors.append(
            Error(
                f"LLM_MODEL is {settings.LLM_MODEL!r}, which is not in the model catalog "
                f"(known: {', '.join(sorted(slugs)) or 'none'}).",
                hint="Set LLM_MODEL to a catalog slug, or add the model in Admin -> Models.",
                id="billing.E003",
            )
        )
    elif not default.enabled:
        errors.append(
            Error(
                f"LLM_MODEL is {settings.LLM_MODEL!r}, which is disabled in the catalog.",
                hint="Enable it in Admin -> Models, or set LLM_MODEL to an enabled model.",
                id="billing.E004",
            )
        )
    for model in models:
        for field, label in (
            ("input_price_per_1k_micros", "input"),
            ("output_price_per_1k_micros", "output"),
        ):
            price = getattr(model, field)
            if price is None:
                problem = "is missing"
            elif price < 0:
                problem = f"is negative ({price})"
            elif price == 0 and model.provider == Provider.ANTHROPIC and model.enabled:
                problem = "is zero for a paid model"
            else:
                continue
            errors.append(
                Error(
                    f"The {label} price of model {model.slug!r} {problem}.",
                    hint=f"Set {field} for {model.slug!r} in Admin -> Models.",
                    obj=model,
                    id="billing.E005",
                )
            )
    return errors
