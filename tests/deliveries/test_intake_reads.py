"""The intake's hot reads are hand-written SQL (deliveries.services: accept, codes, credentials); these
pin down that they still say exactly what the ORM queries they replaced said."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deliveries.models import AlertRequest, Credential, Organization
from deliveries.services import codes
from deliveries.services.accept import Seen, alert_request_reply, alert_request_seen, deliveries_accept
from deliveries.sms import prepare_body
from tests.conftest import Tenant, make_delivery

pytestmark = pytest.mark.django_db


def _codes_drawn(monkeypatch: pytest.MonkeyPatch, *codes_in_order: str) -> None:
    """secrets.choice draws these codes, one character at a time, in this order."""
    characters = iter("".join(codes_in_order))
    monkeypatch.setattr(codes.secrets, "choice", lambda _alphabet: next(characters))


def test_a_new_code_is_never_one_the_recipient_still_has_outstanding(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = make_delivery(tenant, ack_code="ABCD")
    _codes_drawn(monkeypatch, "ABCD", "XYZW")
    assert codes.ack_code_new(organization_id=held.organization_id, recipient=tenant.recipient) == "XYZW"


def test_a_code_acknowledged_or_held_elsewhere_is_free_again(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    acknowledged = make_delivery(tenant, ack_code="ABCD", acknowledged_at=timezone.now())
    make_delivery(tenant, ack_code="DEFG", to_number="+15005550199")  # another recipient's
    _codes_drawn(monkeypatch, "ABCD", "DEFG")
    org_id = acknowledged.organization_id
    assert codes.ack_code_new(organization_id=org_id, recipient=tenant.recipient) == "ABCD"
    assert codes.ack_code_new(organization_id=org_id, recipient=tenant.recipient) == "DEFG"


def test_a_remembered_credential_is_reused_only_while_it_is_the_organisations_unrefused_token(
    tenant: Tenant,
) -> None:
    from deliveries.services.accept import CredentialGone

    credential = make_delivery(tenant).credential
    org_id = credential.organization_id
    other = Organization.objects.create(oid="00000000-0000-4000-8000-000000000000")

    def accepted(key: str, organization_id: int) -> bool:
        try:
            _accept(tenant, key, credential_id=credential.id, organization_id=organization_id)
        except CredentialGone:
            return False
        return True

    assert accepted("k1", org_id)
    assert not accepted("k2", other.id)  # another organisation's
    Credential.objects.filter(id=credential.id).update(rejected_at=timezone.now())
    assert not accepted("k3", org_id)
    Credential.objects.filter(id=credential.id).update(rejected_at=None, auth_token="")  # erased at unsubscribe
    assert not accepted("k4", org_id)
    assert set(AlertRequest.objects.values_list("idempotency_key", flat=True)) == {"k1"}


def _accept(tenant: Tenant, key: str, recipients: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    return deliveries_accept(
        oid=tenant.oid,
        idempotency_key=key,
        ident="rule",
        inv_id="inv",
        from_number=tenant.sender,
        recipients=recipients or [tenant.recipient],
        body=prepare_body("Detection", 1600),
        account_sid=tenant.account_sid,
        auth_token=tenant.auth_token,
        **fields,
    ).reply


def test_the_first_reply_is_found_by_organisation_and_key_only(tenant: Tenant) -> None:
    assert alert_request_reply(oid=tenant.oid, idempotency_key="k1") is None  # an organisation never seen

    first = _accept(tenant, "k1")

    assert alert_request_reply(oid=tenant.oid, idempotency_key="k1") == first
    assert alert_request_reply(oid=tenant.oid, idempotency_key="k2") is None
    assert alert_request_reply(oid="00000000-0000-4000-8000-000000000000", idempotency_key="k1") is None


def test_one_read_finds_the_organisation_and_the_keys_first_reply(tenant: Tenant) -> None:
    assert alert_request_seen(oid=tenant.oid, idempotency_key="k1") == Seen(organization_id=None, reply=None)

    first = _accept(tenant, "k1")
    org_id = Organization.objects.get(oid=tenant.oid).id

    assert alert_request_seen(oid=tenant.oid, idempotency_key="k1") == Seen(organization_id=org_id, reply=first)
    assert alert_request_seen(oid=tenant.oid, idempotency_key="k2") == Seen(organization_id=org_id, reply=None)
    other = _accept(Tenant(**{**tenant.__dict__, "oid": "00000000-0000-4000-8000-000000000000"}), "k1")
    assert other != first  # the same key from another organisation is another call
    assert alert_request_seen(oid=tenant.oid, idempotency_key="k1").reply == first


def test_an_organisation_already_read_is_not_read_again_when_accepting(tenant: Tenant) -> None:
    _accept(tenant, "k1")
    seen = alert_request_seen(oid=tenant.oid, idempotency_key="k2")
    with CaptureQueriesContext(connection) as given:
        second = _accept(tenant, "k2", organization_id=seen.organization_id)
    with CaptureQueriesContext(connection) as not_given:
        _accept(tenant, "k3")

    reads_of_the_organisation = [q for q in not_given.captured_queries if "FROM deliveries_organization" in q["sql"]]
    assert len(reads_of_the_organisation) == 1
    assert not [q for q in given.captured_queries if "FROM deliveries_organization" in q["sql"]]
    assert len(given.captured_queries) == len(not_given.captured_queries) - 1
    assert alert_request_reply(oid=tenant.oid, idempotency_key="k2") == second


def test_a_calls_deliveries_and_its_key_are_written_in_one_statement_on_postgresql(tenant: Tenant) -> None:
    from deliveries.models import AlertRequest, Delivery

    _accept(tenant, "k1")  # the credential is stored by the first call
    with CaptureQueriesContext(connection) as second:
        reply = _accept(tenant, "k2")

    writes = [q["sql"] for q in second.captured_queries if q["sql"].startswith(("INSERT", "WITH"))]
    if connection.vendor == "postgresql":
        assert len(writes) == 1 and writes[0].startswith("WITH written_0 AS (INSERT INTO deliveries_delivery")
        assert "INSERT INTO deliveries_alertrequest" in writes[0]
    else:
        assert [w.split()[2] for w in writes] == ["deliveries_delivery", "deliveries_alertrequest"]
    stored = Delivery.objects.get(idempotency_key="k2")
    assert reply["deliveries"] == [{"id": str(stored.id), "to": tenant.recipient, "status": "pending"}]
    assert AlertRequest.objects.get(idempotency_key="k2").reply == reply


def test_a_repeated_key_stores_no_second_set_of_deliveries(tenant: Tenant) -> None:
    from django.db import IntegrityError, transaction

    from deliveries.models import AlertRequest, Delivery
    from deliveries.services import sql

    first = _accept(tenant, "k1")
    org_id = Organization.objects.get(oid=tenant.oid).id
    template = Delivery.objects.get(idempotency_key="k1")
    again = Delivery(
        **{f.attname: getattr(template, f.attname) for f in Delivery._meta.concrete_fields if f.attname != "id"}
    )
    again.to_number = "+15005550199"

    # The key's row exists: the statement fails whole, on the key (not on a missing value).
    with pytest.raises(IntegrityError, match="idempotency_key|unique"), transaction.atomic():
        sql.together(
            sql.inserting_objects([again]),
            sql.inserting(
                AlertRequest,
                {"organization": org_id, "idempotency_key": "k1", "reply": {}, "created_at": timezone.now()},
            ),
        )

    assert list(Delivery.objects.filter(idempotency_key="k1").values_list("to_number", flat=True)) == [tenant.recipient]
    assert AlertRequest.objects.get(idempotency_key="k1").reply == first


def test_one_read_finds_every_recipients_outstanding_codes_and_checks_the_remembered_credential(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deliveries.models import Delivery
    from deliveries.services.escalate import AckPlan

    second = "+15005550199"
    held = make_delivery(tenant, ack_code="ABCD")
    make_delivery(tenant, ack_code="DEFG", to_number=second)
    _codes_drawn(monkeypatch, "ABCD", "DEFG", "DEFG", "GHJK")  # each recipient's own code is drawn first, then refused

    with CaptureQueriesContext(connection) as accepting:
        _accept(
            tenant,
            "k1",
            recipients=[tenant.recipient, second],
            ack=AckPlan(),
            credential_id=held.credential_id,
            organization_id=held.organization_id,
        )

    given = dict(Delivery.objects.filter(idempotency_key="k1").values_list("to_number", "ack_code"))
    assert given == {tenant.recipient: "DEFG", second: "GHJK"}
    reads = [q["sql"] for q in accepting.captured_queries if q["sql"].startswith("SELECT")]
    assert len(reads) == 1
    assert "FROM deliveries_credential" in reads[0] and "ack_code" in reads[0]


@pytest.mark.django_db(transaction=True)
def test_a_call_with_a_remembered_credential_writes_without_a_transaction_only_on_postgresql(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deliveries.models import AlertRequest, Delivery
    from deliveries.services import queue

    held = make_delivery(tenant)
    statements: list[tuple[str, bool]] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append((sql.split()[0], connection.in_atomic_block))
        return execute(sql, params, many, context)

    monkeypatch.setattr(queue, "send", lambda ids: statements.append(("enqueued " + ",".join(ids), False)))

    with connection.execute_wrapper(record):
        reply = _accept(tenant, "k1", credential_id=held.credential_id, organization_id=held.organization_id)

    stored = Delivery.objects.get(idempotency_key="k1")
    assert reply["deliveries"] == [{"id": str(stored.id), "to": tenant.recipient, "status": "pending"}]
    assert stored.credential_id == held.credential_id
    assert AlertRequest.objects.get(idempotency_key="k1").reply == reply
    if connection.vendor == "postgresql":
        # The reads, then the deliveries and the key in one statement, atomic by itself.
        assert statements == [("SELECT", False), ("WITH", False), (f"enqueued {stored.id}", False)]
    else:  # SQLite's writers take turns by their transactions: the reads are made in it too
        assert statements == [("SELECT", True), ("INSERT", True), ("INSERT", True), (f"enqueued {stored.id}", False)]


@pytest.mark.django_db(transaction=True)
def test_a_remembered_credential_erased_meanwhile_stores_nothing_and_asks_for_the_secret(tenant: Tenant) -> None:
    from deliveries.models import AlertRequest, Delivery
    from deliveries.services.accept import CredentialGone

    held = make_delivery(tenant)
    Credential.objects.filter(id=held.credential_id).update(auth_token="")  # the organisation unsubscribed

    with pytest.raises(CredentialGone):
        _accept(tenant, "k1", credential_id=held.credential_id, organization_id=held.organization_id)

    assert not Delivery.objects.filter(idempotency_key="k1").exists()
    assert not AlertRequest.objects.filter(idempotency_key="k1").exists()


def test_the_repeat_checks_read_also_checks_the_remembered_credential_and_reads_the_outstanding_codes(
    tenant: Tenant,
) -> None:
    second, third = "+15005550199", "+15005550198"
    held = make_delivery(tenant, ack_code="ABCD")
    make_delivery(tenant, ack_code="DEFG")
    make_delivery(tenant, ack_code="GHJK", to_number=second)
    make_delivery(tenant, ack_code="KMNP", to_number=second, acknowledged_at=timezone.now())  # free again
    credential = held.credential
    other = Organization.objects.create(oid="00000000-0000-4000-8000-000000000000")

    def seen(oid: str = tenant.oid) -> Seen:
        return alert_request_seen(
            oid=oid, idempotency_key="k1", credential_id=credential.id, recipients=[tenant.recipient, second, third]
        )

    if connection.vendor != "postgresql":  # SQLite's accepting transaction reads them, exactly
        assert seen() == Seen(organization_id=held.organization_id, reply=None)
        return
    with CaptureQueriesContext(connection) as reading:
        assert seen() == Seen(
            organization_id=held.organization_id,
            reply=None,
            credential_usable=True,
            outstanding={tenant.recipient: {"ABCD", "DEFG"}, second: {"GHJK"}},
        )
    assert len(reading.captured_queries) == 1
    assert alert_request_seen(oid=tenant.oid, idempotency_key="k1") == Seen(held.organization_id, None)
    assert seen(other.oid).credential_usable is False  # another organisation's
    assert seen(other.oid).outstanding == {}
    assert seen("00000000-0000-4000-8000-000000000001") == Seen(None, None)  # an organisation that never called
    Credential.objects.filter(id=credential.id).update(rejected_at=timezone.now())
    assert seen().credential_usable is False
    Credential.objects.filter(id=credential.id).update(rejected_at=None, auth_token="")  # erased at unsubscribe
    assert seen().credential_usable is False


@pytest.mark.django_db(transaction=True)
def test_what_the_callers_read_found_is_read_again_only_inside_a_transaction(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deliveries.models import Delivery
    from deliveries.services import queue
    from deliveries.services.escalate import AckPlan

    held = make_delivery(tenant, ack_code="ABCD")
    _codes_drawn(monkeypatch, "ABCD", "DEFG")  # the recipient's own code is drawn first, then refused
    seen = alert_request_seen(
        oid=tenant.oid, idempotency_key="k1", credential_id=held.credential_id, recipients=[tenant.recipient]
    )
    statements: list[tuple[str, bool]] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append((sql.split()[0], connection.in_atomic_block))
        return execute(sql, params, many, context)

    monkeypatch.setattr(queue, "send", lambda ids: statements.append(("enqueued", False)))

    with connection.execute_wrapper(record):
        _accept(
            tenant,
            "k1",
            ack=AckPlan(),
            credential_id=held.credential_id,
            organization_id=held.organization_id,
            seen=seen,
        )

    stored = Delivery.objects.get(idempotency_key="k1")
    assert stored.credential_id == held.credential_id and stored.ack_code == "DEFG"
    if connection.vendor == "postgresql":  # no transaction: the caller's read a moment ago is as good
        assert statements == [("WITH", False), ("enqueued", False)]
    else:  # SQLite's reads are exact inside its transaction: the credential and codes are read there again
        assert statements == [("SELECT", True), ("INSERT", True), ("INSERT", True), ("enqueued", False)]
