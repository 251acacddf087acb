"""A claim locks its organisation's row and its delivery's in one statement, then reads the rest
(the credential, the limits' counts) after it. These tests hold the organisation's lock in
another transaction while a claim starts, then change what the claim will read, and check that the
claim acts on what was committed while it waited, not on what it would have seen before. PostgreSQL
only: SQLite has no row locks (its write transactions run one at a time)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from deliveries import services
from deliveries.models import Delivery, Organization
from deliveries.services import flood
from deliveries.services.credentials import credentials_erase
from deliveries.services.send import delivery_locked
from tests.conftest import Tenant, make_delivery
from tests.fakes.twilio import FakeTwilio

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: PostgreSQL only"),
]


def _while_the_organisation_is_locked(
    oid: str, change: Callable[[Organization], object], claim: Callable[[], Any]
) -> Any:
    """Lock the organisation's row in a transaction of another thread, make `change` in it, run `claim`
    here meanwhile (it waits for the lock), and commit the change half a second later."""
    locked, proceed = threading.Event(), threading.Event()

    def holder() -> None:
        try:
            with transaction.atomic():
                change(Organization.objects.select_for_update().get(oid=oid))
                locked.set()
                proceed.wait(0.5)  # the claim below is waiting for this lock meanwhile
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    assert locked.wait(10)
    started = timezone.now()
    outcome = claim()
    waited = (timezone.now() - started).total_seconds()
    proceed.set()
    thread.join(10)
    assert waited >= 0.4  # it did wait for the lock
    return outcome


def test_a_claim_that_waited_for_an_unsubscribe_does_not_send_with_the_erased_token(
    tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    delivery = make_delivery(tenant)

    decision = _while_the_organisation_is_locked(
        tenant.oid,
        lambda org: credentials_erase(organization=org),
        lambda: services.delivery_send(delivery_id=str(delivery.id)),
    )

    delivery.refresh_from_db()
    assert decision.status == "failed" and delivery.status == "failed"
    assert "No usable Twilio credential" in delivery.error_message
    assert fake_twilio.posts() == []


def test_a_claim_that_waited_for_another_claim_of_its_delivery_does_nothing(
    tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    delivery = make_delivery(tenant)

    def other_worker_claims(org: Organization) -> None:
        Delivery.objects.filter(id=delivery.id).update(status="sending", claimed_at=timezone.now())

    decision = _while_the_organisation_is_locked(
        tenant.oid, other_worker_claims, lambda: services.delivery_send(delivery_id=str(delivery.id))
    )

    assert decision.status == "sending"
    assert Delivery.objects.get(id=delivery.id).attempts.count() == 0 and fake_twilio.posts() == []


def test_a_claim_that_waited_for_another_claim_of_its_organisation_counts_it_for_flood_control(
    tenant: Tenant, fake_twilio: FakeTwilio, settings: Any
) -> None:
    settings.FLOOD_DUPLICATE_SECONDS = 300
    first = make_delivery(tenant, body="disk full on host-7")
    second = make_delivery(tenant, body="disk full on host-7")

    def other_worker_claims(org: Organization) -> None:
        Delivery.objects.filter(id=first.id).update(status="sending", claimed_at=timezone.now())

    decision = _while_the_organisation_is_locked(
        tenant.oid, other_worker_claims, lambda: services.delivery_send(delivery_id=str(second.id))
    )

    second.refresh_from_db()
    assert decision.status == "suppressed" and (second.status, second.hold) == ("suppressed", "duplicate")
    assert fake_twilio.posts() == []


def test_a_claim_in_progress_does_not_hold_up_the_intakes_new_deliveries_of_its_organisation(
    tenant: Tenant,
) -> None:
    """The claim's locks exclude other claims, not the foreign-key checks of new rows that refer to the
    organisation and the credential: an intake's INSERT goes ahead while a worker claims."""
    claiming = make_delivery(tenant)
    locked, proceed = threading.Event(), threading.Event()

    def worker_claiming() -> None:
        try:
            with transaction.atomic():
                delivery = delivery_locked(str(claiming.id))
                assert delivery is not None
                flood.hold_for(delivery, "automatic", timezone.now())  # the account's lock too
                locked.set()
                proceed.wait(5)
        finally:
            connection.close()

    thread = threading.Thread(target=worker_claiming)
    thread.start()
    assert locked.wait(10)
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '500ms'")  # a wait for the claim's locks fails here
            new = Delivery.objects.create(
                organization=claiming.organization,
                credential=claiming.credential,
                idempotency_key="while-a-worker-claims",
                from_number=tenant.sender,
                to_number=tenant.recipient,
                body="Detection: another",
                original_length=18,
                encoding="gsm7",
                segments=1,
            )
    finally:
        proceed.set()
        thread.join(10)
    assert Delivery.objects.filter(id=new.id, status="pending").exists()
