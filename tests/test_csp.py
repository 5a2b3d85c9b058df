"""The Content Security Policy: on every kind of page, as strict as settings say, and
nothing in the templates that it would refuse. Exports are files, never pages.

What a real browser does under the policy is in test_browser_xss.py."""

from __future__ import annotations

import re
from importlib import import_module
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.http import HttpResponse
from django.test import Client

from conversations.models import Conversation, Message
from llm.simulator.replies import XSS_CORPUS

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

# The policy, directive by directive, exactly.
POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self'",
    "connect-src": "'self'",
    "frame-ancestors": "'none'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
}


def policy_of(response: HttpResponse) -> dict[str, str]:
    header = response.headers.get("Content-Security-Policy")
    assert header, f"no Content-Security-Policy on {response.status_code} {response}"
    directives = [part.strip().split(None, 1) for part in header.split(";") if part.strip()]
    return {name: value for name, value in directives}


@pytest.fixture
def staff(db: None):  # type: ignore[no-untyped-def]
    """A support person (the roles migration's group; transactional tests empty it)."""
    wanted = import_module("support.migrations.0002_roles").SUPPORT_PERMISSIONS
    group, _ = Group.objects.get_or_create(name="Support")
    group.permissions.set(
        [Permission.objects.get(content_type__app_label=app, codename=code) for app, code in wanted]
    )
    user = get_user_model().objects.create_user(
        "helper", password="helper-password-1", is_staff=True
    )
    user.groups.add(group)
    return user


@pytest.fixture
def hostile(alice) -> Conversation:  # type: ignore[no-untyped-def]
    """A conversation whose user message and reply are both the XSS corpus."""
    conversation = Conversation.objects.create(owner=alice, model="claude-4-6", title=XSS_CORPUS)
    asked = Message.objects.create(conversation=conversation, role="user", content=XSS_CORPUS)
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content=XSS_CORPUS,
        content_html="<p>rendered</p>",
        reply_to=asked,
        model="claude-4-6",
    )
    return conversation


def client_for(user=None) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def test_every_kind_of_page_carries_the_policy(alice, staff, hostile):
    anonymous, person, support = client_for(), client_for(alice), client_for(staff)
    conversation = hostile.get_absolute_url()
    pages = [
        (anonymous, "/accounts/login/", 200),
        (anonymous, "/accounts/signup/", 200),
        (anonymous, "/admin/login/", 200),
        (anonymous, "/", 302),  # the redirect to sign in
        (anonymous, "/healthz", 200),  # no path is exempt: it costs nothing
        (person, "/", 200),
        (person, conversation, 200),
        (person, f"{conversation}delete/", 200),
        (person, "/conversations/", 200),
        (person, "/conversations/?q=script", 200),
        (person, "/usage/", 200),
        (person, f"{conversation}export.md", 200),
        (person, f"{conversation}export.json", 200),
        (person, "/no/such/page/", 404),
        (support, "/support/", 200),
        (support, "/admin/", 200),
    ]
    for client, path, status in pages:
        response = client.get(path)
        assert response.status_code == status, path
        assert policy_of(response) == POLICY, path
    # A form post and its redirect too (the language picker).
    response = person.post("/i18n/setlang/", {"language": "fr", "next": "/"})
    assert response.status_code == 302
    assert policy_of(response) == POLICY


def test_exports_are_files_a_browser_never_renders_as_a_page(alice, hostile):
    web = client_for(alice)
    for suffix, content_type in (("md", "text/markdown"), ("json", "application/json")):
        response = web.get(f"{hostile.get_absolute_url()}export.{suffix}")
        assert response["Content-Type"] == f"{content_type}; charset=utf-8"
        assert response["Content-Disposition"].startswith("attachment;")
        assert response["X-Content-Type-Options"] == "nosniff"
        # The hostile text is in the file as it was typed: data, kept whole.
        assert "<script>alert('xss-script')" in response.content.decode("utf-8")


def test_the_templates_hold_nothing_the_policy_refuses():
    """No inline script, inline style or event-handler attribute in any template: the
    policy would refuse each one, so a new one would break the page it is on."""
    problems = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        text = re.sub(
            r"\{#.*?#\}|\{% comment %\}.*?\{% endcomment %\}",
            "",
            path.read_text(encoding="utf-8"),
            flags=re.S,
        )
        for pattern, what in (
            (r"<script(?![^>]*\bsrc=)[^>]*>", "inline <script>"),
            (r"<style\b", "inline <style>"),
            (r"<[a-z][^>]*\sstyle=", "style attribute"),
            (r"<[a-z][^>]*\son[a-z]+=", "event-handler attribute"),
            (r"\shx-on[:-]", "hx-on (needs eval)"),
            (r"\bjs:|javascript:", "script in an attribute"),
        ):
            if re.search(pattern, text, re.I):
                problems.append(f"{path.relative_to(TEMPLATES)}: {what}")
    assert problems == []
