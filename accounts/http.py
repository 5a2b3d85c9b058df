"""The request a signed-in person's view gets, as the type checker sees it."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest


class AuthenticatedHttpRequest(HttpRequest):
    """What `login_required` guarantees: `request.user` is a signed-in person, never
    AnonymousUser. An annotation for views behind `login_required` (and the helpers they
    pass their request to), so the user can go to services and queries that take a `User`
    without a check at every call."""

    user: User
