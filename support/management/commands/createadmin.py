"""Create (or update) an administrator without prompts, for containers and scripts.

manage.py createadmin --username admin --email ops@example.com
(the password comes from --password or, better, the ADMIN_PASSWORD environment variable)
"""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from support.models import ADMIN_GROUP


class Command(BaseCommand):
    help = "Create or update an administrator (superuser, Admin group) non-interactively."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", required=True)
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password", default=None, help="Prefer the ADMIN_PASSWORD environment variable."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password = options["password"] or os.environ.get("ADMIN_PASSWORD", "")
        if not password:
            raise CommandError("Give a password with ADMIN_PASSWORD (or --password).")
        users = get_user_model()
        existing = users.objects.filter(username=options["username"]).first()
        created = existing is None
        user = users(username=options["username"]) if existing is None else existing
        try:
            validate_password(password, user)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        user.email = options["email"] or user.email
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        group = Group.objects.filter(name=ADMIN_GROUP).first()
        if group is not None:
            user.groups.add(group)
        verb = "Created" if created else "Updated"
        self.stdout.write(f"{verb} administrator {user.get_username()}.")
