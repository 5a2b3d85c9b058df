"""Startup checks name the setting to fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from billing.checks import check_catalog, check_provider_settings
from billing.models import CatalogModel


def ids(messages) -> list[str]:
    return [m.id for m in messages]


def test_a_fresh_install_has_no_problems(settings):
    settings.LLM_PROVIDER, settings.LLM_MODEL = "local", "smollm2-135m"
    assert check_provider_settings() == [] and check_catalog() == []


@pytest.mark.parametrize(
    ("provider", "missing"),
    [
        ("anthropic", "ANTHROPIC_API_KEY"),
        ("anthropic", "ANTHROPIC_BASE_URL"),
        ("openai", "OPENAI_BASE_URL"),
    ],
)
def test_a_provider_without_its_key_or_url_is_reported(settings, provider, missing):
    settings.LLM_PROVIDER = provider
    settings.ANTHROPIC_API_KEY = "sk-x"
    settings.ANTHROPIC_BASE_URL = "http://127.0.0.1:1"
    settings.OPENAI_BASE_URL = "http://127.0.0.1:2/v1"
    setattr(settings, missing, "")
    errors = check_provider_settings()
    assert ids(errors) == ["billing.E002"]
    assert missing in errors[0].msg and missing in errors[0].hint


def test_an_unknown_provider_is_reported(settings):
    settings.LLM_PROVIDER = "gpt"
    errors = check_provider_settings()
    assert ids(errors) == ["billing.E001"] and "LLM_PROVIDER" in errors[0].msg


def test_a_default_model_missing_from_the_catalog_is_reported(settings):
    settings.LLM_MODEL = "claude-9"
    errors = check_catalog()
    assert ids(errors) == ["billing.E003"]
    assert "LLM_MODEL" in errors[0].msg and "claude-9" in errors[0].msg


def test_a_disabled_default_model_is_reported(settings):
    settings.LLM_MODEL = "claude-4-6"
    CatalogModel.objects.filter(slug="claude-4-6").update(enabled=False)
    assert ids(check_catalog()) == ["billing.E004"]


@pytest.mark.parametrize(
    ("slug", "field", "value", "words"),
    [
        ("claude-4-6", "input_price_per_1k_micros", None, "is missing"),
        ("smollm2-135m", "output_price_per_1k_micros", -5, "is negative"),
        ("claude-4-6", "output_price_per_1k_micros", 0, "is zero for a paid model"),
    ],
)
def test_a_missing_negative_or_zero_paid_price_is_reported(settings, slug, field, value, words):
    settings.LLM_MODEL = "smollm2-135m"
    CatalogModel.objects.filter(slug=slug).update(**{field: value})
    errors = check_catalog()
    assert ids(errors) == ["billing.E005"]
    assert words in errors[0].msg and slug in errors[0].msg and field in errors[0].hint


def test_the_seeded_catalog_matches_the_model_card():
    claude = CatalogModel.objects.get(slug="claude-4-6")
    assert (claude.context_window, claude.max_output_tokens) == (128_000, 4096)
    # $0.001 and $0.002 per 1k tokens: 1 and 2 micro-dollars per token, exactly.
    assert (claude.input_price_per_1k_micros, claude.output_price_per_1k_micros) == (1000, 2000)
    local = CatalogModel.objects.get(slug="smollm2-135m")
    assert local.provider == "local" and local.input_price_per_1k_micros == 0


def test_the_local_models_context_window_is_the_one_it_was_trained_with():
    from billing.catalog import local_model_path
    from llm.local import LocalConfig, shared_model

    llama = shared_model(LocalConfig(model_path=local_model_path(), context_window=2048)).llama()
    assert CatalogModel.objects.get(slug="smollm2-135m").context_window == (
        llama._model.n_ctx_train()
    )


def test_the_in_memory_channel_layer_is_refused_with_debug_off(settings):
    from conversations.checks import check_channel_layer

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.DEBUG = True
    assert check_channel_layer() == []  # one process on a laptop
    settings.DEBUG = False
    assert ids(check_channel_layer()) == ["conversations.E001"]
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}
    assert check_channel_layer() == []


def _manage_check(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", "check", *args],
        cwd=Path(__file__).resolve().parent.parent,
        env=environment,
        capture_output=True,
        text=True,
    )


PRODUCTION = {
    "DEBUG": "false",
    "REDIS_URL": "redis://127.0.0.1:6379/12",
    "SECRET_KEY": "k" * 20 + "a-long-random-looking-production-secret-0123456789",
    "ALLOWED_HOSTS": "chat.example.com",
    "ALERT_EMAILS": "ops@example.com",
}


def test_production_settings_pass_the_deploy_check():
    result = _manage_check("--deploy", **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_alerts_e_mailed_to_nobody_are_a_warning_not_a_refusal():
    result = _manage_check("--deploy", **{**PRODUCTION, "ALERT_EMAILS": ""})
    assert result.returncode == 0, result.stderr
    assert "ops.W001" in result.stdout + result.stderr
    assert "ALERT_EMAILS is empty" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"SECRET_KEY": "too-short"}, "ops.E001"),
        ({"ALLOWED_HOSTS": "*"}, "ops.E002"),
        ({"REDIS_URL": ""}, "conversations.E001"),
    ],
)
def test_unsafe_production_settings_are_refused_at_start(change, error):
    result = _manage_check(**{**PRODUCTION, **change})
    assert result.returncode != 0 and error in result.stderr
