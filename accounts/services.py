from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction

from billing.models import ServiceSettings


def signup_open() -> bool:
    """Sign-up is open when an admin left it open, and always before the first account."""
    User = get_user_model()
    return ServiceSettings.load().signup_open or not User.objects.exists()


def user_signup(*, username: str, password: str) -> User:
    """Create an account. The first account of a fresh install becomes its administrator,
    as a newcomer to a self-hosted app expects."""
    User = get_user_model()
    with transaction.atomic():
        user = User.objects.create_user(username=username, password=password)
        # The lowest id is the first account, even if two sign-ups raced.
        if User.objects.order_by("pk").values_list("pk", flat=True).first() == user.pk:
            user.is_staff = True
            user.is_superuser = True
            user.save(update_fields=["is_staff", "is_superuser"])
    return user
