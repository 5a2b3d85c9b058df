from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models


class ServiceSettings(models.Model):
    """Service-wide settings an admin changes at run time. There is one row (pk=1)."""

    signup_open = models.BooleanField(
        default=True,
        help_text="Whether new people can create an account. The first account can always "
        "be created: it becomes the administrator.",
    )

    class Meta:
        verbose_name = "service settings"
        verbose_name_plural = "service settings"

    def __str__(self) -> str:
        return "Service settings"

    def save(self, *args: object, **kwargs: object) -> None:
        self.pk = 1
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def load(cls) -> ServiceSettings:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj


class Provider(models.TextChoices):
    ANTHROPIC = "anthropic", "Anthropic Messages API"
    OPENAI = "openai", "OpenAI-compatible server"
    LOCAL = "local", "Built-in local model"


class CatalogModel(models.Model):
    """A model people can chat with, its limits and its prices.

    Prices are integer micro-dollars per 1,000 tokens: claude-4-6's $0.001 / $0.002 per 1k
    are 1,000 and 2,000, i.e. 1 and 2 micro-dollars per token. Never floats. A missing
    price (NULL) is a configuration error the startup checks report.
    """

    slug = models.SlugField(max_length=100, unique=True, help_text="The id users and the API see.")
    display_name = models.CharField(max_length=100)
    provider = models.CharField(max_length=20, choices=Provider.choices)
    upstream_name = models.CharField(
        max_length=200,
        blank=True,
        help_text="The model name sent to the provider, if it differs from the slug.",
    )
    context_window = models.PositiveIntegerField(help_text="Tokens, input and output together.")
    max_output_tokens = models.PositiveIntegerField()
    input_price_per_1k_micros = models.BigIntegerField(
        null=True,
        validators=[MinValueValidator(0)],
        help_text="Micro-dollars per 1,000 input tokens ($0.001 = 1000).",
    )
    output_price_per_1k_micros = models.BigIntegerField(
        null=True,
        validators=[MinValueValidator(0)],
        help_text="Micro-dollars per 1,000 output tokens ($0.002 = 2000).",
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["display_name"]
        verbose_name = "model"

    def __str__(self) -> str:
        return self.display_name

    def clean(self) -> None:
        if (
            self.max_output_tokens
            and self.context_window
            and (self.max_output_tokens >= self.context_window)
        ):
            raise ValidationError({"max_output_tokens": "Must be smaller than the context window."})

    @property
    def model_name(self) -> str:
        return self.upstream_name or self.slug

    @property
    def prompt_budget(self) -> int:
        """Tokens of history that fit beside a full-length reply."""
        return max(0, self.context_window - self.max_output_tokens)
