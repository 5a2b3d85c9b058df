"""Seed the catalog: claude-4-6 exactly as its model card says, and the built-in SmolLM2."""

from django.db import migrations

MODELS = [
    {
        "slug": "claude-4-6",
        "display_name": "Claude 4.6",
        "provider": "anthropic",
        "context_window": 128_000,
        "max_output_tokens": 4096,
        # $0.001 and $0.002 per 1k tokens, in micro-dollars per 1k tokens.
        "input_price_per_1k_micros": 1000,
        "output_price_per_1k_micros": 2000,
    },
    {
        "slug": "smollm2-135m",
        "display_name": "SmolLM2 135M (local)",
        "provider": "local",
        # The context SmolLM2-135M was trained with (the GGUF's n_ctx_train).
        "context_window": 8192,
        "max_output_tokens": 2048,
        # It runs on our own CPU: free unless an admin sets a price.
        "input_price_per_1k_micros": 0,
        "output_price_per_1k_micros": 0,
    },
]


def seed(apps, schema_editor):
    CatalogModel = apps.get_model("billing", "CatalogModel")
    for fields in MODELS:
        CatalogModel.objects.update_or_create(slug=fields["slug"], defaults=fields)


def unseed(apps, schema_editor):
    CatalogModel = apps.get_model("billing", "CatalogModel")
    CatalogModel.objects.filter(slug__in=[m["slug"] for m in MODELS]).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_catalog")]
    operations = [migrations.RunPython(seed, unseed)]
