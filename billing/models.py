from __future__ import annotations

from django.conf import settings
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
    default_user_cap_micros = models.BigIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Each user's daily budget in micro-dollars ($1 = 1,000,000), unless set "
        "per user. Empty: USER_DAILY_CAP_USD.",
    )
    service_cap_micros = models.BigIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="The whole service's daily budget in micro-dollars. Empty: DAILY_CAP_USD, "
        "which is also its ceiling (the model card's hard limit).",
    )

    class Meta:
        verbose_name = "service settings"
        verbose_name_plural = "service settings"

    def __str__(self) -> str:
        return "Service settings"

    def save(self, *args: object, **kwargs: object) -> None:
        self.pk = 1
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def clean(self) -> None:
        ceiling = settings.DAILY_CAP_MICROS
        if self.service_cap_micros is not None and self.service_cap_micros > ceiling:
            raise ValidationError(
                {"service_cap_micros": f"At most {ceiling:,} (DAILY_CAP_USD, the hard limit)."}
            )

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


class UserBudget(models.Model):
    """A user's own daily cap, when an admin sets one; otherwise USER_DAILY_CAP_USD."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="budget"
    )
    daily_cap_micros = models.BigIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Micro-dollars per day ($5.00 = 5000000). Empty: the default cap.",
    )

    def __str__(self) -> str:
        return f"Budget of {self.user}"


class DailySpend(models.Model):
    """Money spent and held for one scope (the service, or one user) on one billing day.

    The invariant `spent + reserved <= cap` is kept by conditional UPDATEs (meter.py).
    """

    SERVICE = "service"

    scope = models.CharField(max_length=40)  # "service" or "user:<id>"
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE
    )
    day = models.DateField()
    spent_micros = models.BigIntegerField(default=0)
    reserved_micros = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "day"], name="daily_spend_scope_day"),
            models.CheckConstraint(
                condition=models.Q(spent_micros__gte=0) & models.Q(reserved_micros__gte=0),
                name="daily_spend_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scope} on {self.day}"


class Outcome(models.TextChoices):
    COMPLETE = "complete"
    CUT_OFF = "cut_off"
    STOPPED = "stopped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class Reservation(models.Model):
    """The most a turn can cost, held against the budgets until the turn is settled."""

    class State(models.TextChoices):
        HELD = "held"
        SETTLED = "settled"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    day = models.DateField(help_text="The billing day the turn started on: it is charged there.")
    model = models.CharField(max_length=100)
    # Prices when the turn started: a price change mid-turn does not change its cost.
    input_price_per_1k_micros = models.BigIntegerField()
    output_price_per_1k_micros = models.BigIntegerField()
    input_tokens_estimate = models.PositiveIntegerField()
    max_tokens = models.PositiveIntegerField()
    amount_micros = models.BigIntegerField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.HELD)
    # What the turn is (ids, not foreign keys: billing does not depend on conversations).
    conversation_id = models.UUIDField(null=True, blank=True)
    message_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    charged_micros = models.BigIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["state", "created_at"]),
            # Per-user requests a minute are counted from reservations.
            models.Index(fields=["user", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"Reservation {self.pk} ({self.state})"


class UsageRecord(models.Model):
    """One upstream request: who, what, how many tokens, what it cost and how it ended."""

    reservation = models.ForeignKey(Reservation, on_delete=models.PROTECT, related_name="usage")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    day = models.DateField()
    conversation_id = models.UUIDField(null=True, blank=True)
    message_id = models.BigIntegerField(null=True, blank=True)
    model = models.CharField(max_length=100)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_micros = models.BigIntegerField(default=0, help_text="At the turn's prices.")
    charged_micros = models.BigIntegerField(
        default=0, help_text="What the budgets were charged (never past a cap)."
    )
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    error_kind = models.CharField(max_length=40, blank=True)
    # For admins and support: status, upstream error type and message, request id.
    error_detail = models.TextField(blank=True)
    upstream_request_id = models.CharField(max_length=100, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    retries = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["day", "user"]), models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"{self.model} {self.outcome} {self.cost_micros}µ$"
