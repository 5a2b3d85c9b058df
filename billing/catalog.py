"""The model catalog at run time: which models can be used, who serves them, their tokens.

Providers hold an HTTP connection pool, which belongs to the event loop that made it, so
one provider is kept per running loop and configuration. The local model is loaded once per
process whatever the loop (llm.local keeps it).
"""

from __future__ import annotations

import asyncio
import math
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from django.conf import settings

from llm.anthropic import AnthropicConfig, AnthropicProvider
from llm.base import Provider as ProviderClient
from llm.local import LocalConfig, LocalProvider, bundled_model_path, shared_model
from llm.openai import OpenAIConfig, OpenAIProvider

from .models import CatalogModel, Provider

# For models whose tokenizer we do not have, a count that errs high (fitting less history,
# never more than the window): English runs near four bytes a token and CJK near three, so
# a token per three bytes; and never fewer tokens than words and punctuation marks, which
# covers text of many short words. Each message adds a few tokens of framing.
BYTES_PER_TOKEN_ESTIMATE = 3
_PIECES = re.compile(r"\w+|[^\w\s]")
MESSAGE_OVERHEAD_TOKENS = 4


@dataclass(frozen=True)
class ProviderSpec:
    """Everything needed to build a provider client; hashable, so clients can be shared."""

    name: str
    base_url: str = ""
    api_key: str = ""
    context_window: int = 0

    def __repr__(self) -> str:  # The key stays out of logs and tracebacks.
        return f"ProviderSpec(name={self.name!r}, base_url={self.base_url!r})"


def local_model_path() -> str:
    return settings.LOCAL_MODEL_PATH or bundled_model_path()


def provider_configured(provider: str) -> bool:
    if provider == Provider.ANTHROPIC:
        return bool(settings.ANTHROPIC_API_KEY and settings.ANTHROPIC_BASE_URL)
    if provider == Provider.OPENAI:
        return bool(settings.OPENAI_BASE_URL)
    return provider == Provider.LOCAL


def spec_for(model: CatalogModel) -> ProviderSpec:
    if model.provider == Provider.ANTHROPIC:
        return ProviderSpec("anthropic", settings.ANTHROPIC_BASE_URL, settings.ANTHROPIC_API_KEY)
    if model.provider == Provider.OPENAI:
        return ProviderSpec("openai", settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY)
    return ProviderSpec("local", context_window=model.context_window)


_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[ProviderSpec, ProviderClient]
] = weakref.WeakKeyDictionary()


def _build(spec: ProviderSpec) -> ProviderClient:
    timeouts = {
        "connect_timeout": settings.LLM_CONNECT_TIMEOUT,
        # A backstop only: the generation's own first-token and between-token timeouts
        # come first and say which it was.
        "read_timeout": max(settings.LLM_FIRST_TOKEN_TIMEOUT, settings.LLM_TOKEN_TIMEOUT) + 10,
    }
    if spec.name == "anthropic":
        return AnthropicProvider(
            AnthropicConfig(
                base_url=spec.base_url,
                api_key=spec.api_key,
                version=settings.ANTHROPIC_VERSION,
                **timeouts,
            )
        )
    if spec.name == "openai":
        return OpenAIProvider(
            OpenAIConfig(base_url=spec.base_url, api_key=spec.api_key, **timeouts)
        )
    return LocalProvider(_local_config(spec.context_window))


def _local_config(context_window: int) -> LocalConfig:
    return LocalConfig(
        model_path=local_model_path(),
        context_window=context_window,
        threads=settings.LOCAL_MODEL_THREADS,
        temperature=settings.LOCAL_MODEL_TEMPERATURE,
    )


def client(spec: ProviderSpec) -> ProviderClient:
    """The provider client for `spec`, for the running event loop."""
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    provider = per_loop.get(spec)
    if provider is None:
        provider = per_loop[spec] = _build(spec)
    return provider


# Providers whose API takes an assistant prefill (the reply's own text so far, as the last
# message) and goes on from it: only these can Continue a reply cut off at the length
# limit. OpenAI-compatible servers start a new answer instead.
CONTINUABLE_PROVIDERS = frozenset({Provider.ANTHROPIC, Provider.LOCAL})


def can_continue(model: CatalogModel | None) -> bool:
    return model is not None and model.provider in CONTINUABLE_PROVIDERS


def get_model(slug: str) -> CatalogModel | None:
    return CatalogModel.objects.filter(slug=slug).first()


def available_models() -> list[CatalogModel]:
    """Enabled models whose provider is configured: what users may choose from."""
    return [m for m in CatalogModel.objects.filter(enabled=True) if provider_configured(m.provider)]


def default_model() -> str:
    return settings.LLM_MODEL


def display_name(slug: str) -> str:
    """The name people know a model by ("Claude 4.6"), or its slug if the catalog has
    no such model any more."""
    model = get_model(slug)
    return model.display_name if model is not None and model.display_name else slug


def estimate_tokens(text: str) -> int:
    """A conservative token count for a model whose tokenizer we do not have."""
    by_bytes = math.ceil(len(text.encode()) / BYTES_PER_TOKEN_ESTIMATE)
    return max(by_bytes, len(_PIECES.findall(text)))


def token_counter(model: CatalogModel) -> Callable[[str], int]:
    """Counts tokens of a message's text, with the model's own tokenizer where we have it."""
    if model.provider == Provider.LOCAL:
        return shared_model(_local_config(model.context_window)).count_tokens
    return estimate_tokens


@dataclass(frozen=True)
class Model:
    """A catalog model resolved once for a call: its row (name, limits, prices), who serves
    it and how its tokens are counted. Handed down from where a turn starts to the meter
    and the provider, instead of each going back to the catalog for the same model."""

    row: CatalogModel
    spec: ProviderSpec

    @property
    def slug(self) -> str:
        return self.row.slug

    @property
    def display_name(self) -> str:
        return self.row.display_name or self.row.slug

    @property
    def context_window(self) -> int:
        return self.row.context_window

    @property
    def max_output_tokens(self) -> int:
        return self.row.max_output_tokens

    @property
    def continuable(self) -> bool:
        """Whether its provider can go on from a reply's own text (Continue)."""
        return can_continue(self.row)

    @cached_property
    def count(self) -> Callable[[str], int]:
        """Counts the tokens of a text, with the model's own tokenizer where we have it
        (the local model's is loaded on first use, not when the model is resolved)."""
        return token_counter(self.row)

    def max_output(self, wanted: int | None) -> int:
        """The longest reply to ask for: `wanted` (a conversation's setting), within the
        model's own limit."""
        return max(1, min(wanted or self.max_output_tokens, self.max_output_tokens))


def usable(slug: str | None) -> Model | None:
    """The catalog model `slug` (the default model if empty), resolved, if people may use
    it now: it exists, is enabled and its provider is configured."""
    row = get_model(slug or default_model())
    if row is None or not row.enabled or not provider_configured(row.provider):
        return None
    return Model(row, spec_for(row))
