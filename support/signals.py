"""A user made inactive (suspended) loses their open sockets at once."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from conversations.sockets import close_sockets


@receiver(post_save, sender=get_user_model())
def close_sockets_of_inactive_users(sender: Any, instance: Any, **kwargs: Any) -> None:
    if not instance.is_active and not kwargs.get("created"):
        # Once committed: a socket reconnecting at once must find the account closed.
        user_id = instance.pk
        transaction.on_commit(lambda: close_sockets(user_id))
