from __future__ import annotations

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
