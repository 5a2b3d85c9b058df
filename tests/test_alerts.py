"""Alerts: a refused key on 30 turns is one alert, one e-mail and one staff banner.

The e-mail goes through a real SMTP server on loopback (aiosmtpd): while it is down the
alert is kept, and it is sent when the server comes back. Plain users never see the banner;
acknowledging it clears it for every staff member. The key is in none of it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from email.message import Message as EmailMessage

import pytest
from aiosmtpd.controller import Controller
from channels.db import database_sync_to_async
from django.test import Client
from django.utils import timezone

from billing import calls, meter
from billing.errors import CATALOG
from billing.models import CatalogModel, DailySpend
from conversations import endings
from conversations.models import Conversation, Message
from ops import alerts
from ops.models import Alert

from .conftest import TEST_KEY, communicator, receive_until, send_frame

DONE = 'message--assistant" data-status='
BANNER = 'class="staff-alerts"'


class _Inbox:
    """aiosmtpd's handler: every message the server accepted."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


class SMTPServer:
    """An SMTP server on a loopback port chosen now, started and stopped at will."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.inbox = _Inbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp(settings) -> Iterator[SMTPServer]:  # type: ignore[no-untyped-def]
    server = SMTPServer()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = server.port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_TIMEOUT = 5
    settings.ALERT_EMAILS = ["ops@example.com", "oncall@example.com"]
    settings.DEFAULT_FROM_EMAIL = "chat@example.com"
    yield server
    server.stop()


@pytest.fixture
def carol(django_user_model):  # type: ignore[no-untyped-def]
    """An administrator (staff, every permission: the support dashboard too)."""
    return django_user_model.objects.create_superuser("carol", "carol@example.com", "pw-carol-123")


@pytest.fixture
def dave(django_user_model):  # type: ignore[no-untyped-def]
    """Another staff member."""
    return django_user_model.objects.create_user("dave", password="pw-dave-123", is_staff=True)


def signed_in(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def banners(page: str) -> int:
    return page.count(BANNER)


async def test_a_refused_key_on_30_turns_is_one_alert_one_mail_and_one_staff_banner(
    settings, smtp, alice, alice_cookie, carol, dave
):
    settings.USER_RPM = 1000  # thirty turns in a few seconds
    friendly = CATALOG["authentication"].user_message
    comm = communicator(alice_cookie)
    await comm.connect()
    for n in range(30):
        await comm.send_to(text_data=send_frame("Hi [sim:error=401]", f"k{n}"))
        frames = await receive_until(comm, DONE + '"failed"', timeout=30)
        assert friendly in frames[-1], n
        assert TEST_KEY not in "".join(frames)
    await comm.disconnect()

    @database_sync_to_async
    def check_alert_and_mail() -> Alert:
        assert Message.objects.filter(role="assistant", error_kind="authentication").count() == 30
        alert = Alert.objects.get()
        assert (alert.kind, alert.count, alert.acknowledged_at) == ("authentication", 30, None)
        assert alert.upstream_status == 401 and alert.upstream_error_type
        assert alert.upstream_request_id.startswith("req_")
        assert "API key" in alert.what_to_check

        # The mail server is down: nothing is sent, and the alert stays due.
        assert alerts.send_due() == 0
        assert smtp.inbox.messages == []
        alert.refresh_from_db()
        assert (alert.count_at_last_mail, alert.last_mailed_at) == (0, None)

        # It comes back: one e-mail, saying 30, to every address; then nothing more is due.
        smtp.start()
        assert alerts.send_due() == 1
        assert alerts.send_due() == 0
        return alert

    alert = await check_alert_and_mail()
    assert len(smtp.inbox.messages) == 1
    mail = smtp.inbox.messages[0]
    body = mail.get_payload(decode=True).decode()
    assert "30 times" in mail["Subject"] and "30 times" in body
    assert "The provider refused the API key" in body and "status 401" in body
    assert mail["To"] == "ops@example.com, oncall@example.com"
    assert TEST_KEY not in mail.as_string()

    @database_sync_to_async
    def check_banners() -> None:
        carol_web, dave_web, alice_web = signed_in(carol), signed_in(dave), signed_in(alice)
        conversation = Conversation.objects.filter(owner=alice).first()
        pages = {
            "chat": carol_web.get("/"),
            "admin index": carol_web.get("/admin/"),
            "support dashboard": carol_web.get("/support/"),
            "dave's chat": dave_web.get("/"),
        }
        for where, response in pages.items():
            page = response.content.decode()
            assert response.status_code == 200, where
            assert banners(page) == 1, where
            assert page.count('class="staff-alert"') == 1, where  # one alert, not 30
            assert "30 times since" in page and TEST_KEY not in page, where
        for url in ["/", f"/c/{conversation.pk}/", "/usage/"]:
            response = alice_web.get(url)
            assert response.status_code == 200, url
            assert banners(response.content.decode()) == 0, url

        # carol acknowledges: recorded, and gone for every staff member.
        ack = carol_web.post(f"/alerts/{alert.pk}/acknowledge", {"next": "/admin/"})
        assert (ack.status_code, ack["Location"]) == (302, "/admin/")
        alert.refresh_from_db()
        assert alert.acknowledged_by == carol and alert.acknowledged_at is not None
        for client in (carol_web, dave_web):
            assert banners(client.get("/").content.decode()) == 0
            assert banners(client.get("/admin/").content.decode()) == 0

    await check_banners()


def test_one_open_alert_per_kind_a_new_one_after_acknowledging(carol):
    for _ in range(3):
        alerts.raise_alert(alerts.Kind.BILLING, what_to_check="Top it up.")
    alerts.raise_alert(alerts.Kind.PERMISSION, count=2)
    assert dict(Alert.objects.values_list("kind", "count")) == {"billing": 3, "permission": 2}
    first = Alert.objects.get(kind="billing")
    assert alerts.acknowledge(first.pk, carol) and not alerts.acknowledge(first.pk, carol)
    alerts.raise_alert(alerts.Kind.BILLING)
    assert [a.count for a in Alert.objects.filter(kind="billing").order_by("id")] == [3, 1]


def test_an_alert_is_mailed_at_most_once_per_window_with_the_count_since(settings, smtp):
    smtp.start()
    settings.ALERT_EMAIL_MINUTES = 15
    alerts.raise_alert(alerts.Kind.SPEND_LIMIT, count=4)
    now = timezone.now()
    assert alerts.send_due(now) == 1
    alerts.raise_alert(alerts.Kind.SPEND_LIMIT, count=3)
    assert alerts.send_due(now + timedelta(minutes=5)) == 0  # within the window
    assert alerts.send_due(now + timedelta(minutes=16)) == 1
    subjects = [m["Subject"] for m in smtp.inbox.messages]
    assert "4 times" in subjects[0] and "3 times" in subjects[1]
    assert "since the last e-mail" in smtp.inbox.messages[1].get_payload()
    assert alerts.send_due(now + timedelta(minutes=40)) == 0  # nothing new


def test_without_alert_emails_nothing_is_sent_and_the_banner_says_so(settings, carol):
    settings.ALERT_EMAILS = []
    alerts.raise_alert(alerts.Kind.RECOVERY, count=2)
    assert alerts.send_due() == 0
    page = signed_in(carol).get("/").content.decode()
    assert banners(page) == 1 and "ALERT_EMAILS is not set" in page


def test_a_plain_user_cannot_acknowledge(alice):
    alerts.raise_alert(alerts.Kind.BILLING)
    alert = Alert.objects.get()
    assert signed_in(alice).post(f"/alerts/{alert.pk}/acknowledge").status_code == 404
    assert Client().post(f"/alerts/{alert.pk}/acknowledge").status_code == 404
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_acknowledge_goes_back_only_to_this_site(carol):
    alerts.raise_alert(alerts.Kind.BILLING)
    alert = Alert.objects.get()
    response = signed_in(carol).post(
        f"/alerts/{alert.pk}/acknowledge", {"next": "https://evil.example/"}
    )
    assert response["Location"] == "/"
    assert signed_in(carol).get(f"/alerts/{alert.pk}/acknowledge").status_code == 405


def test_alerts_in_the_admin_filtered_and_acknowledged(carol):
    alerts.raise_alert(alerts.Kind.BILLING)
    alerts.raise_alert(alerts.Kind.PERMISSION)
    web = signed_in(carol)
    listing = web.get("/admin/ops/alert/?kind__exact=billing&acknowledged=no")
    assert listing.status_code == 200
    page = listing.content.decode()
    billing, permission = (Alert.objects.get(kind=k) for k in ("billing", "permission"))
    assert f'name="_selected_action" value="{billing.pk}"' in page
    assert f'name="_selected_action" value="{permission.pk}"' not in page
    done = web.post(
        "/admin/ops/alert/",
        {"action": "acknowledge", "_selected_action": [billing.pk]},
    )
    assert done.status_code == 302
    billing.refresh_from_db()
    assert billing.acknowledged_by == carol
    assert Alert.objects.get(kind="permission").acknowledged_at is None


def test_metrics_count_alerts_by_kind(carol):
    alerts.raise_alert(alerts.Kind.BUDGET_PRICE, count=2)
    text = signed_in(carol).get("/metrics").content.decode()
    assert 'chat_alerts_open{kind="budget_price"} 1.0' in text
    assert 'chat_alerts_open{kind="billing"} 0.0' in text
    assert 'chat_alerts_total{kind="budget_price"}' in text


async def test_a_model_without_a_price_is_an_alert(alice, alice_cookie):
    await database_sync_to_async(CatalogModel.objects.filter(slug="claude-4-6").update)(
        input_price_per_1k_micros=None
    )
    comm = communicator(alice_cookie)
    await comm.connect()
    await comm.send_to(text_data=send_frame("Hi", "p1"))
    await receive_until(comm, DONE + '"failed"')
    await comm.disconnect()
    alert = await database_sync_to_async(Alert.objects.get)()
    assert alert.kind == "budget_price" and "claude-4-6" in alert.what_to_check


def test_an_alert_raised_in_a_transaction_that_rolls_back_is_kept():
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        alerts.raise_alert(alerts.Kind.BUDGET_PRICE)
        raise RuntimeError("refused")
    assert not Alert.objects.exists()  # not written inside the transaction
    alerts.flush_pending()  # the sender's next round
    assert Alert.objects.get().kind == "budget_price"


async def test_a_run_of_server_errors_is_an_alert(settings, alice, alice_cookie):
    settings.ALERT_UPSTREAM_FAILURES = 4
    settings.USER_RPM = 1000
    comm = communicator(alice_cookie)
    await comm.connect()
    for n in range(2):  # three attempts each: 3, then 6 failures in the window
        await comm.send_to(text_data=send_frame("Hi [sim:error=500x9]", f"s{n}"))
        await receive_until(comm, DONE + '"failed"', timeout=30)
    await comm.disconnect()
    alert = await database_sync_to_async(Alert.objects.get)()
    assert alert.kind == "upstream_failures" and alert.count == 3
    assert "6 server errors or timeouts" in alert.detail


def test_the_service_crossing_80_and_100_percent_of_its_cap_is_an_alert(settings, alice):
    settings.DAILY_CAP_MICROS = 1000  # claude-4-6: 1 micro-dollar an input token
    settings.USER_DAILY_CAP_MICROS = 10_000  # the service's cap is the one reached
    model = calls.catalog.usable("claude-4-6")

    def spend(reserved: int, used: int) -> list[str]:
        """Reserve for `reserved` input tokens, settle for `used`: the marks crossed."""
        grant = calls.reserve(user=alice, model=model, input_tokens=reserved, max_tokens=1)
        _, _, crossed = calls._settle(
            grant.reservation_id,
            [meter.Attempt(input_tokens=used, output_tokens=0, outcome="complete")],
            lambda charged: charged,
        )
        return [kind for kind, _ in crossed]

    assert spend(700, 700) == []  # $0.000700
    assert spend(50, 50) == []  # 750
    assert spend(100, 100) == ["service_cap_80"]  # 850
    assert spend(50, 50) == []  # 900
    assert spend(98, 100) == ["service_cap_100"]  # 1000: the cap
    row = DailySpend.objects.get(scope=DailySpend.SERVICE, day=meter.today())
    assert row.spent_micros == 1000
    # The next turn is refused for the service's cap: the open alert counts it.
    with pytest.raises(meter.Refused):
        calls.reserve(user=alice, model=model, input_tokens=1, max_tokens=1)
    assert Alert.objects.get(kind="service_cap_100").count == 1
    # Through a call's settlement the crossings become alerts (here raised by hand, as
    # Call.settle does after the commit).
    for kind, figures in [("service_cap_80", "Spent $0.00085 of the $0.001 cap.")]:
        alerts.raise_alert(kind, detail=figures)
    assert Alert.objects.get(kind="service_cap_80").detail.startswith("Spent")


def test_recovering_a_dead_processs_turns_is_an_alert(alice):
    conversation = Conversation.objects.create(owner=alice, model="claude-4-6")
    question = Message.objects.create(conversation=conversation, role="user", content="q")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="half",
        status="streaming",
        reply_to=question,
    )
    Message.objects.filter(role="assistant").update(
        updated_at=timezone.now() - timedelta(minutes=5)
    )
    assert endings.recover_stale_turns(stale_after=60) == 1
    alert = Alert.objects.get()
    assert (alert.kind, alert.count) == ("recovery", 1)


def test_a_failed_start_up_check_is_an_alert(settings):
    settings.LLM_MODEL = "no-such-model"
    assert alerts.alert_failed_checks() >= 1
    alert = Alert.objects.get()
    assert alert.kind == "startup_check" and "billing.E003" in alert.detail
