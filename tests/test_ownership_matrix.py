"""The ownership matrix: bob tries alice's ids on every object-scoped entry point.

Every URL pattern and every websocket message type is listed here, as object-scoped (with
the request bob makes) or as not scoped to an object (with why). A route or message type
added without a row fails `test_every_entry_point_is_in_the_matrix`, so nobody can add one
and forget its ownership check.

alice owns the conversation; bob is another user; both are signed in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from channels.db import database_sync_to_async
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from conversations import protocol
from conversations.consumers import ChatConsumer
from conversations.models import Conversation, Message

from .conftest import communicator
from .ws_helpers import NOT_YOURS


@dataclass(frozen=True)
class Call:
    method: str
    data: dict[str, str] | None = None
    alice_status: int = 200  # what the owner gets: proof the row is not simply broken


# Routes that name one of a person's objects: bob must get 404 for alice's.
OBJECT_SCOPED: dict[str, Call] = {
    "conversation": Call("GET"),
    "older-messages": Call("GET"),
    "conversation-menu": Call("GET"),
    "conversation-rename": Call("POST", {"title": "pwned"}, alice_status=302),
    "conversation-archive": Call("POST", {"archived": "1"}, alice_status=302),
    "conversation-delete": Call("POST", alice_status=302),
    "conversation-settings": Call(
        "POST", {"system_prompt": "pwned", "temperature": "1", "max_output_tokens": "5"}, 302
    ),
    "conversation-export-md": Call("GET"),
    "conversation-export-json": Call("GET"),
}
# Routes with no object in their address, and what keeps them to their own user.
NOT_OBJECT_SCOPED: dict[str, str] = {
    "chat": "the signed-in user's own list and an empty composer",
    "conversation-list": "filters by owner (selectors.conversations_for_user)",
    "signup": "no object",
    "login": "no object",
    "logout": "the requester's own session",
    "set_language": "a cookie of the requester's",
    "favicon": "no object (a static file)",
    "healthz": "no object",
    "readyz": "no object",
    "metrics": "staff or a token; aggregates only",
    "support-dashboard": "staff in the Support or Admin group only (tests/test_support.py)",
    "usage": "the requester's own usage",
    "alert-acknowledge": "staff only: anyone else gets 404 and nothing changes (below)",
}
# Websocket message types that name one of alice's objects, and what bob is told.
WS_SCOPED = NOT_YOURS


def named_routes() -> set[str]:
    """Every named route outside the admin (the admin is checked by model below)."""
    names: set[str] = set()

    def walk(patterns: list, prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                if entry.app_name == "admin":
                    continue
                walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                assert entry.name, f"unnamed route {prefix}{entry.pattern}: name it and list it"
                names.add(entry.name)

    walk(get_resolver().url_patterns, "")
    return names


def message_types() -> set[str]:
    """Every message type the consumer answers: what protocol.parse reads, each with a
    handler on the consumer."""
    for kind in protocol.TYPES:
        request = protocol.parse(json.dumps({"type": kind}))
        assert hasattr(ChatConsumer, f"on_{type(request).__name__.lower()}"), kind
    return set(protocol.TYPES)


def test_every_entry_point_is_in_the_matrix():
    routes = named_routes()
    listed = set(OBJECT_SCOPED) | set(NOT_OBJECT_SCOPED)
    assert routes - listed == set(), "new routes: add them to the ownership matrix"
    assert listed - routes == set(), "rows for routes that no longer exist"
    assert message_types() == set(WS_SCOPED), "websocket types changed: update the matrix"


@pytest.fixture
def alices(alice) -> dict[str, object]:
    """alice's conversation: a question, a reply cut off at the length limit, then a failed
    reply to a second question (so Continue, Retry and Regenerate all have a target)."""
    conversation = Conversation.objects.create(
        owner=alice, model="claude-4-6", title="Secret", system_prompt="be kind"
    )
    first = Message.objects.create(conversation=conversation, role="user", content="my plan")
    cut = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="half of it",
        status="cut_off",
        reply_to=first,
    )
    second = Message.objects.create(conversation=conversation, role="user", content="again")
    failed = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="",
        status="failed",
        reply_to=second,
    )
    return {"conversation": conversation, "message": first, "reply": cut, "failed": failed}


def state(conversation: Conversation) -> tuple:
    """Everything bob could have changed."""
    fresh = Conversation.objects.filter(pk=conversation.pk).values().first()
    messages = list(
        Message.objects.filter(conversation=conversation)
        .order_by("id")
        .values("id", "role", "content", "status", "superseded", "cost_micros")
    )
    return fresh, messages


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("name", sorted(OBJECT_SCOPED))
def test_bob_gets_404_for_alices_objects_over_http(name, alices, alice, bob):
    from django.urls import reverse

    conversation = alices["conversation"]
    call = OBJECT_SCOPED[name]
    url = reverse(name, kwargs={"conversation_id": conversation.pk})
    before = state(conversation)
    bob_web = signed_in(bob)
    response = getattr(bob_web, call.method.lower())(url, call.data or {})
    assert response.status_code == 404, (name, response.status_code)
    assert b"Secret" not in response.content and b"my plan" not in response.content
    assert state(conversation) == before, f"bob's {name} changed alice's conversation"
    # A malformed id is the same 404, never a 500.
    broken = url.replace(str(conversation.pk), "00000000-0000-0000-0000-000000000000")
    assert getattr(bob_web, call.method.lower())(broken, call.data or {}).status_code == 404

    owner = getattr(signed_in(alice), call.method.lower())(url, call.data or {})
    assert owner.status_code == call.alice_status, (name, owner.status_code)


def test_a_signed_out_visitor_reaches_no_object(alices):
    from django.urls import reverse

    conversation = alices["conversation"]
    before = state(conversation)
    for name, call in OBJECT_SCOPED.items():
        url = reverse(name, kwargs={"conversation_id": conversation.pk})
        response = getattr(Client(), call.method.lower())(url, call.data or {})
        assert response.status_code == 302, name
        assert response["Location"].startswith("/accounts/login/"), name
    assert state(conversation) == before


def test_a_plain_user_gets_nothing_from_the_admin(alices, bob):
    """Every registered model's list, and its change page for alice's rows, send a person
    without staff status to the admin's sign-in page."""
    conversation = alices["conversation"]
    bob_web = signed_in(bob)
    rows = {Conversation: conversation.pk, Message: alices["message"].pk}
    assert bob_web.get("/admin/").status_code == 302
    for model in admin.site._registry:
        meta = model._meta
        base = f"/admin/{meta.app_label}/{meta.model_name}/"
        for url in [base, f"{base}{rows.get(model, 1)}/change/"]:
            response = bob_web.get(url)
            assert response.status_code == 302, url
            assert response["Location"].startswith("/admin/login/"), url


@pytest.mark.parametrize("kind", sorted(WS_SCOPED))
async def test_bob_gets_not_found_for_alices_objects_over_the_websocket(
    kind, alices, alice_cookie, bob_cookie
):
    conversation = alices["conversation"]
    field, error = WS_SCOPED[kind]
    target = {
        "conversation": str(conversation.pk),
        "reply": str(alices["failed" if kind == "retry" else "reply"].pk),
        "message": str(alices["message"].pk),
    }[field]
    payload = {"type": kind, field: target, "client_id": f"bob-{kind}"}
    if kind == "send":
        payload["message"] = "injected"
    if kind == "edit":
        payload["text"] = "injected"
    if kind == "resume":
        payload["after"] = 0
    before = await database_sync_to_async(state)(conversation)

    # alice watches her conversation: nothing bob does may reach her page either.
    watcher = communicator(alice_cookie)
    assert (await watcher.connect())[0]
    await watcher.send_to(text_data=json.dumps({"type": "subscribe", **target_of(conversation)}))
    bob = communicator(bob_cookie)
    assert (await bob.connect())[0]
    await bob.send_to(text_data=json.dumps(payload))
    frame = await bob.receive_from(timeout=3)
    assert error in frame, frame
    assert "my plan" not in frame and "half of it" not in frame
    assert await bob.receive_nothing(timeout=0.3)
    assert await watcher.receive_nothing(timeout=0.3)
    assert await database_sync_to_async(state)(conversation) == before
    # bob's socket is still his to use.
    await bob.send_to(text_data=json.dumps({"type": "subscribe", "conversation": "x"}))
    assert "That conversation was not found." in await bob.receive_from()
    await bob.disconnect()
    await watcher.disconnect()


def target_of(conversation: Conversation) -> dict[str, str]:
    return {"conversation": str(conversation.pk)}


def test_only_staff_can_acknowledge_an_alert(alice, bob):
    """An alert is not anyone's object: acknowledging it is staff work. A plain user (bob,
    alice) and a signed-out visitor get the 404 of an alert that does not exist."""
    from django.urls import reverse

    from ops import alerts
    from ops.models import Alert

    alerts.raise_alert(alerts.Kind.AUTHENTICATION)
    alert = Alert.objects.get()
    url = reverse("alert-acknowledge", kwargs={"alert_id": alert.pk})
    for web in (signed_in(bob), signed_in(alice), Client()):
        assert web.post(url).status_code == 404
        assert web.post(url.replace(str(alert.pk), "999999")).status_code == 404
    alert.refresh_from_db()
    assert alert.acknowledged_at is None and alert.acknowledged_by is None
