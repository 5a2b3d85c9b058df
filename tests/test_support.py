"""Admins, support and end users: who sees what, suspension, CSV, audit log, dashboard."""

from __future__ import annotations

import csv
import io
import json
import re
from importlib import import_module

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.test import Client

from billing import meter
from billing.models import ServiceSettings, UsageRecord
from conversations.models import Conversation, Message
from support.models import AuditLog

from .conftest import communicator, receive_until

DONE = 'message--assistant" data-status='
SECRET = "my secret plans for the weekend"


@pytest.fixture
def roles(db: None) -> None:
    """The groups the roles migration makes (transactional tests empty every table)."""
    wanted = import_module("support.migrations.0002_roles").SUPPORT_PERMISSIONS
    support, _ = Group.objects.get_or_create(name="Support")
    support.permissions.set(
        [Permission.objects.get(content_type__app_label=app, codename=code) for app, code in wanted]
    )
    admin, _ = Group.objects.get_or_create(name="Admin")
    admin.permissions.set(Permission.objects.all())


@pytest.fixture
def root(roles):  # type: ignore[no-untyped-def]
    return get_user_model().objects.create_superuser("root", password="root-password-1")


@pytest.fixture
def helper(roles):  # type: ignore[no-untyped-def]
    user = get_user_model().objects.create_user(
        "helper", password="helper-password-1", is_staff=True
    )
    user.groups.add(Group.objects.get(name="Support"))
    return user


def web(user=None) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def alices_conversation(alice) -> tuple[Conversation, Message]:  # type: ignore[no-untyped-def]
    conversation = Conversation.objects.create(owner=alice, model="claude-4-6", title=SECRET)
    asked = Message.objects.create(conversation=conversation, role="user", content=SECRET)
    reply = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="Have fun " + SECRET,
        reply_to=asked,
        status="failed",
        error_kind="server",
        error_detail="kind=server status=500 type=api_error request_id=req_123 message=boom",
    )
    return conversation, reply


PAGES = {
    "admin index": "/admin/",
    "usage records": "/admin/billing/usagerecord/",
    "usage CSV": "/admin/billing/usagerecord/export.csv",
    "daily spend": "/admin/billing/dailyspend/",
    "reservations": "/admin/billing/reservation/",
    "user budgets": "/admin/billing/userbudget/",
    "models": "/admin/billing/catalogmodel/",
    "service settings": "/admin/billing/servicesettings/",
    "users": "/admin/auth/user/",
    "conversations": "/admin/conversations/conversation/",
    "messages": "/admin/conversations/message/",
    "audit log": "/admin/support/auditlog/",
    "dashboard": "/support/",
}
SUPPORT_DENIED = {"service settings", "audit log"}


@pytest.mark.parametrize("page", sorted(PAGES))
def test_each_role_gets_exactly_its_pages(page, root, helper, alice):
    url = PAGES[page]
    assert web(root).get(url).status_code == 200
    assert web(helper).get(url).status_code == (403 if page in SUPPORT_DENIED else 200)
    normal = web(alice).get(url)
    anonymous = web().get(url)
    if url.startswith("/admin/"):
        # Not staff: the admin's sign-in page, nothing of the admin.
        assert normal.status_code == anonymous.status_code == 302
        assert "/admin/login/" in normal["Location"]
    else:
        assert normal.status_code == 403
        assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]


def test_support_reads_text_only_after_recording_a_reason(root, helper, alice):
    conversation, reply = alices_conversation(alice)
    client = web(helper)
    change = f"/admin/conversations/conversation/{conversation.pk}/change/"
    message = f"/admin/conversations/message/{reply.pk}/change/"
    for url in (change, message, "/admin/conversations/conversation/"):
        page = client.get(url).content.decode()
        assert SECRET not in page, url
    # The error details are there for support all along.
    assert "request_id=req_123" in client.get(message).content.decode()
    assert AuditLog.objects.count() == 0

    read = f"/admin/conversations/conversation/{conversation.pk}/read/"
    assert "Record the reason" in client.get(read).content.decode()
    too_short = client.post(read, {"reason": "why"})
    assert too_short.status_code == 200 and AuditLog.objects.count() == 0
    done = client.post(read, {"reason": "Ticket 4521: alice reports a failed reply"})
    assert done.status_code == 302
    assert SECRET in client.get(change).content.decode()
    assert SECRET in client.get(message).content.decode()
    entry = AuditLog.objects.get()
    assert (entry.actor, entry.owner, entry.conversation_id) == (helper, alice, conversation.pk)
    assert entry.reason.startswith("Ticket 4521")
    # Admins read the log; support does not; another conversation stays closed.
    assert "Ticket 4521" in web(root).get("/admin/support/auditlog/").content.decode()
    other, _ = alices_conversation(alice)
    assert (
        SECRET
        not in client.get(f"/admin/conversations/conversation/{other.pk}/change/").content.decode()
    )


def test_an_admin_reads_freely_and_each_read_is_logged(root, alice):
    conversation, _ = alices_conversation(alice)
    page = web(root).get(f"/admin/conversations/conversation/{conversation.pk}/change/")
    assert SECRET in page.content.decode()
    assert AuditLog.objects.get().reason == "(administrator)"


async def test_usage_csv_holds_the_filtered_records(root, alice, alice_cookie):
    comm = communicator(alice_cookie)
    await comm.connect()
    conversation = ""
    for n, (text, ending) in enumerate(
        [("Fine [sim:tokens=7]", "complete"), ("Broken [sim:error=401]", "failed")]
    ):
        await comm.send_to(
            text_data=json.dumps(
                {
                    "type": "send",
                    "message": text,
                    "client_id": f"u{n}",
                    "conversation": conversation,
                }
            )
        )
        frames = await receive_until(comm, f'{DONE}"{ending}"')
        if not conversation:
            conversation = frames[0].split('data-conversation="')[1].split('"')[0]
    await comm.disconnect()

    def export(query: str) -> list[dict[str, str]]:
        response = web(root).get(f"/admin/billing/usagerecord/export.csv{query}")
        assert response["Content-Type"].startswith("text/csv")
        return list(csv.DictReader(io.StringIO(response.content.decode())))

    everything = await database_sync_to_async(export)("")
    assert [(r["outcome"], r["error_kind"]) for r in everything] == [
        ("complete", ""),
        ("failed", "authentication"),
    ]
    assert everything[0]["user"] == "alice" and everything[0]["output_tokens"] == "7"
    failed = await database_sync_to_async(export)("?outcome__exact=failed")
    assert len(failed) == 1 and "status=401" in failed[0]["error_detail"]
    records = await database_sync_to_async(lambda: list(UsageRecord.objects.order_by("id")))()
    assert everything[0]["charged_micros"] == str(records[0].charged_micros)
    assert everything[1]["upstream_request_id"] == records[1].upstream_request_id


async def test_suspending_a_user_closes_their_socket_and_stops_new_turns(root, alice, alice_cookie):
    comm = communicator(alice_cookie)
    connected, _ = await comm.connect()
    assert connected
    admin = await database_sync_to_async(web)(root)
    response = await database_sync_to_async(admin.post)(
        "/admin/auth/user/", {"action": "suspend", "_selected_action": [alice.pk]}
    )
    assert response.status_code == 302
    closed = await comm.receive_output(timeout=3)
    assert closed == {"type": "websocket.close", "code": 4003}
    again = communicator(alice_cookie)
    refused, _ = await again.connect()
    assert not refused  # the session no longer signs anyone in
    await database_sync_to_async(admin.post)(
        "/admin/auth/user/", {"action": "reactivate", "_selected_action": [alice.pk]}
    )
    back = communicator(alice_cookie)
    assert (await back.connect())[0]
    await back.disconnect()


def test_the_dashboard_shows_the_ledgers(root, helper, alice, bob):
    from billing.models import DailySpend, Reservation

    day = meter.today()
    for user, spent in [(alice, 3_000), (bob, 1_200)]:
        DailySpend.objects.create(scope=f"user:{user.pk}", day=day, spent_micros=spent)
    DailySpend.objects.create(scope="service", day=day, spent_micros=4_200)
    reservation = Reservation.objects.create(
        user=alice,
        day=day,
        model="claude-4-6",
        input_price_per_1k_micros=1000,
        output_price_per_1k_micros=2000,
        input_tokens_estimate=10,
        max_tokens=10,
        amount_micros=30,
    )
    for kind, ttft in [("", 300), ("", 500), ("rate_limit", None), ("overloaded", None)]:
        UsageRecord.objects.create(
            reservation=reservation,
            user=alice,
            day=day,
            model="claude-4-6",
            outcome="failed" if kind else "complete",
            error_kind=kind,
            ttft_ms=ttft,
            retries=1 if kind == "overloaded" else 0,
        )
    page = web(helper).get("/support/").content.decode()
    assert "$0.0042 of $100.00" in page
    assert page.index("alice") < page.index("bob")  # top users, highest first
    assert f'data-day="{day:%Y-%m-%d}" data-value="4200"' in page
    # Error kinds in words, not codes (Step 10: the support pages used to show the codes).
    assert '<tr data-kind="rate_limit"><td>Rate-limited by the provider</td><td>1</td>' in page
    assert '<tr data-kind="overloaded"><td>Provider overloaded</td><td>1</td>' in page
    assert "<td>rate_limit</td>" not in page
    # The spend chart's scale: round figures up to just above the largest day ($0.0042).
    scale = re.search(r'<div class="chart-scale"[^>]*>(.*?)</div>', page, re.S)[1]
    assert re.findall(r"<span>(.*?)</span>", scale) == [
        meter.format_usd(micros) for micros in (5000, 4000, 3000, 2000, 1000, 0)
    ]
    assert 'id="ttft">400 / 490 / 498 ms' in page  # median of 300 and 500
    assert 'id="rate-limited">1<' in page and 'id="retries">1<' in page


def test_my_usage_page_shows_my_spend_only(alice, bob):
    from billing.models import DailySpend

    DailySpend.objects.create(scope=f"user:{alice.pk}", day=meter.today(), spent_micros=1_500_000)
    DailySpend.objects.create(scope=f"user:{bob.pk}", day=meter.today(), spent_micros=999_999)
    page = web(alice).get("/usage/").content.decode()
    assert "$1.50 of $5.00 today" in page and "$3.50 left today" in page
    assert 'data-value="1500000"' in page and "999999" not in page


def test_service_settings_set_the_caps_within_the_hard_limit(alice, settings):
    service = ServiceSettings.load()
    service.default_user_cap_micros, service.service_cap_micros = 2_000_000, 50_000_000
    service.save()
    assert meter.user_cap_micros(alice) == 2_000_000
    assert meter.service_cap_micros() == 50_000_000
    service.service_cap_micros = 500_000_000
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        service.full_clean()
    service.save()  # even if saved around the form, the hard limit holds
    assert meter.service_cap_micros() == settings.DAILY_CAP_MICROS


def test_createadmin_and_usage_today(monkeypatch, capsys, roles):
    monkeypatch.setenv("ADMIN_PASSWORD", "a-strong-admin-passphrase")
    call_command("createadmin", username="ops", email="ops@example.com")
    ops = get_user_model().objects.get(username="ops")
    assert ops.is_superuser and ops.is_staff and ops.check_password("a-strong-admin-passphrase")
    assert ops.groups.filter(name="Admin").exists()
    call_command("usage_today")
    out = capsys.readouterr().out
    assert "Spent: $0.00 of $100.00" in out and "Requests: 0" in out


def test_support_cannot_filter_on_text_in_the_address(helper, root, alice):
    conversation, _ = alices_conversation(alice)
    for url in [
        "/admin/conversations/message/?content__icontains=weekend",
        "/admin/conversations/message/?content__startswith=my",
        f"/admin/conversations/message/?conversation={conversation.pk}&content_html__contains=x",
        "/admin/conversations/conversation/?title__icontains=secret",
        "/admin/conversations/conversation/?system_prompt__icontains=a",
        "/admin/conversations/conversation/?messages__content__icontains=weekend",
    ]:
        assert web(helper).get(url).status_code == 400, url
    assert (
        web(root).get("/admin/conversations/message/?content__icontains=weekend").status_code == 200
    )
    assert AuditLog.objects.filter(actor=helper).count() == 0


def test_support_cannot_suspend_anyone(helper, root, alice):
    for target in (root, alice):
        web(helper).post(
            "/admin/auth/user/", {"action": "suspend", "_selected_action": [target.pk]}
        )
        target.refresh_from_db()
        assert target.is_active


def test_the_people_list_does_not_query_per_person(root, django_assert_max_num_queries):
    for n in range(40):
        get_user_model().objects.create_user(f"person{n}", password="x-person-pass-1")
    client = web(root)
    with django_assert_max_num_queries(15):
        page = client.get("/admin/auth/user/")
    assert page.status_code == 200 and "person39" in page.content.decode()


def test_usage_csv_cells_never_run_as_formulas(root):
    from billing.admin import _cell

    assert _cell("=HYPERLINK(1)") == "'=HYPERLINK(1)" and _cell("@x") == "'@x"
    assert _cell("alice") == "alice" and _cell(12) == 12


def test_a_page_number_out_of_range_is_the_last_page_not_an_error(alice):
    assert web(alice).get("/conversations/?page=99999999999999999999999").status_code == 200


def test_every_error_kind_has_words_on_the_support_pages():
    from billing.errors import CATALOG
    from support.labels import error_kind_label

    for kind in CATALOG:
        label = error_kind_label(kind)
        assert label and label != kind and "_" not in label, kind


def test_chart_scales_are_round_and_fit_the_largest_day():
    from datetime import date

    from support.views import CHART_HEIGHT, day_chart, nice_scale

    assert nice_scale(0) == (1, 1)
    assert nice_scale(3) == (1, 3)
    assert nice_scale(7) == (2, 4)
    assert nice_scale(4_200) == (1_000, 5)
    assert nice_scale(100) == (20, 5)
    today = date(2026, 12, 2)
    chart = day_chart({today: 7}, today)
    assert chart.scale == ["8", "6", "4", "2", "0"]
    assert chart.gridlines == [CHART_HEIGHT, 90, 60, 30, 0]
    assert chart.bars[-1].height == round(7 / 8 * CHART_HEIGHT)
    # Days labelled: today and every 7th before it; on a phone every 14th.
    assert [bar.tick for bar in chart.bars if bar.tick][-1] == "always"
    assert [n for n, bar in enumerate(chart.bars) if bar.tick] == [1, 8, 15, 22, 29]
    assert [n for n, bar in enumerate(chart.bars) if bar.tick == "always"] == [1, 15, 29]
    assert day_chart({}, today).scale == ["0"]
