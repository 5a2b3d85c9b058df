"""Which provider answers for a model, built from settings.

Providers hold an HTTP connection pool, which belongs to the event loop that made it, so
one provider is kept per running loop and configuration.
"""

from __future__ import annotations

import asyncio
import weakref

from django.conf import settings

from llm.anthropic import AnthropicConfig, AnthropicProvider
from llm.base import Provider

_providers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, Provider]] = (
    weakref.WeakKeyDictionary()
)


def _anthropic_config() -> AnthropicConfig:
    return AnthropicConfig(
        base_url=settings.ANTHROPIC_BASE_URL,
        api_key=settings.ANTHROPIC_API_KEY,
        version=settings.ANTHROPIC_VERSION,
        connect_timeout=settings.LLM_CONNECT_TIMEOUT,
        read_timeout=settings.LLM_READ_TIMEOUT,
    )


def provider_for(model: str) -> Provider:
    """The provider serving `model`, for the running event loop."""
    config = _anthropic_config()
    key = ("anthropic", config.base_url, config.api_key, config.version)
    per_loop = _providers.setdefault(asyncio.get_running_loop(), {})
    provider = per_loop.get(key)
    if provider is None:
        provider = per_loop[key] = AnthropicProvider(config)
    return provider


def default_model() -> str:
    return settings.LLM_MODEL


def max_output_tokens(model: str) -> int:
    return settings.LLM_MAX_OUTPUT_TOKENS
