"""Every delivery is bound to the Twilio credential it was accepted with: its send, retries,
reconciliation, resends and the check of its status callbacks use that one, never the one a later
call (another rule, another secret, a rotation) brought."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from deliveries import services
from deliveries.models import Delivery
from deliveries.tasks import send_delivery
from tests.conftest import Intake, Tenant, make_user
from tests.fakes.limacharlie import FakeLimaCharlie
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db
PUBLIC = "https://sms.example.com"


@pytest.fixture(autouse=True)
def public_url(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = PUBLIC
    settings.ALLOWED_HOSTS = ["testserver", "sms.example.com"]


@pytest.fixture
def second_account(tenant: Tenant, fake_lc: FakeLimaCharlie, fake_twilio: FakeTwilio) -> tuple[str, str]:
    """Account B, in the same organisation's Secrets Manager under the name `other`."""
    sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    fake_lc.add_secret(tenant.oid, "other", f"{sid}/{token}")
    fake_twilio.add_account(sid, token)
    return sid, token


def _callback(client: Any, delivery: Delivery, token: str, status: str = "delivered") -> Any:
    params = {"MessageSid": delivery.twilio_sid, "MessageStatus": status, "To": delivery.to_number}
    path = f"/twilio/status/{delivery.id}/"
    signature = RequestValidator(token).compute_signature(PUBLIC + path, params)
    return client.post(
        path, urlencode(params), content_type="application/x-www-form-urlencoded", HTTP_X_TWILIO_SIGNATURE=signature
    )


def test_two_rules_with_two_secrets_each_send_with_their_own_account(
    intake: Intake, tenant: Tenant, second_account: tuple[str, str], fake_twilio: FakeTwilio, client: Any
) -> None:
    sid_b, token_b = second_account
    intake.run(tenant, body="rule one", to="+15005550011")
    intake.run(tenant, body="rule two", to="+15005550012", secret="other")

    assert {(r.account_sid, r.form["Body"].split("\n")[0]) for r in fake_twilio.received} == {
        (tenant.account_sid, "rule one"),
        (sid_b, "rule two"),
    }
    first = Delivery.objects.get(body__startswith="rule one")
    # A forged receipt signed with the other account's token is refused; the genuine one is taken.
    assert _callback(client, first, token_b).status_code == 403
    first.refresh_from_db()
    assert first.status == "queued"
    assert _callback(client, first, tenant.auth_token).status_code == 200
    first.refresh_from_db()
    assert first.status == "delivered"


def test_a_resend_uses_the_credential_the_delivery_was_accepted_with(
    intake: Intake,
    tenant: Tenant,
    second_account: tuple[str, str],
    fake_twilio: FakeTwilio,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    sid_b, _ = second_account
    fake_twilio.plan("error", status=400, code=21211, message="Invalid 'To' number")
    intake.run(tenant, body="first", to="+15005550021")
    intake.run(tenant, body="second", to="+15005550022", secret="other")  # a later call, another account
    first = Delivery.objects.get(body__startswith="first")
    assert first.status == "failed"

    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_resend(delivery=first, by=make_user("operator"), reason="number fixed at the carrier")

    posts = [(r.account_sid, r.form["Body"].split("\n")[0]) for r in fake_twilio.received]
    assert posts == [(tenant.account_sid, "first"), (sid_b, "second"), (tenant.account_sid, "first")]


def test_reconciliation_looks_in_the_deliverys_own_account(
    intake: Intake, tenant: Tenant, second_account: tuple[str, str], fake_twilio: FakeTwilio
) -> None:
    fake_twilio.plan("create_then_500")
    intake.run(tenant, body="ambiguous one", to="+15005550031")  # eager: reconciled at once, found
    intake.run(tenant, body="another", to="+15005550032", secret="other")

    delivery = Delivery.objects.get(body__startswith="ambiguous one")
    assert delivery.status == "queued" and delivery.twilio_sid
    assert [r.account_sid for r in fake_twilio.received if r.form.get("Body", "").startswith("ambiguous one")] == [
        tenant.account_sid
    ]
    assert [a.outcome for a in delivery.attempts.all()] == ["ambiguous", "found_on_reconcile"]


def test_a_secret_rotated_while_a_delivery_waits_does_not_change_its_account(
    intake: Intake,
    tenant: Tenant,
    fake_lc: FakeLimaCharlie,
    fake_twilio: FakeTwilio,
    monkeypatch: pytest.MonkeyPatch,
    client: Any,
) -> None:
    with monkeypatch.context() as patch:  # the broker is down: the first alert waits, pending
        patch.setattr("deliveries.tasks.send_delivery.apply_async", lambda *a, **k: (_ for _ in ()).throw(OSError()))
        intake.run(tenant, body="before the rotation", to="+15005550041")
    new_token = secrets.token_hex(16)
    fake_lc.add_secret(tenant.oid, "twilio", f"{tenant.account_sid}/{new_token}")
    fake_twilio.add_account(tenant.account_sid, new_token)  # Twilio accepts the new token only now
    intake.run(tenant, body="after the rotation", to="+15005550042")

    waiting = Delivery.objects.get(body__startswith="before the rotation")
    send_delivery.apply(args=(str(waiting.id),))

    waiting.refresh_from_db()
    assert waiting.status == "failed" and waiting.error_code == 20003  # the old token, as accepted
    old = waiting.credential
    assert old is not None and old.auth_token == tenant.auth_token and old.rejected_at is not None
    later = Delivery.objects.get(body__startswith="after the rotation")
    assert later.status == "queued" and later.credential is not None and later.credential.auth_token == new_token
