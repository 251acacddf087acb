"""The send path's hand-written statements (deliveries.services.sql) read and write exactly what the
ORM would: every field of the delivery, its credential and organisation, and the attempt's rows."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.forms.models import model_to_dict
from django.utils import timezone

from deliveries.models import Attempt, Delivery
from deliveries.services import sql
from deliveries.services.attempts import attempt_finish, attempt_open
from tests.conftest import Tenant, make_delivery

pytestmark = pytest.mark.django_db


def test_a_delivery_read_by_hand_equals_the_orm_s_with_its_credential_and_organisation(
    tenant: Tenant, django_assert_num_queries: Any
) -> None:
    now = timezone.now()
    delivery = make_delivery(
        tenant, truncated=True, ack_code="K7Q", due_at=now, claimed_at=now, error_code=30003, status_reason="x"
    )
    by_orm = Delivery.objects.select_related("organization", "credential").get(id=delivery.id)

    with django_assert_num_queries(2):  # the delivery with its organisation; a query with its credential
        by_hand = sql.delivery_for_claim(delivery.id)
        assert by_hand is not None
        assert sql.with_credential(("SELECT 7 AS a, 'x' AS b", []), by_hand) == (7, "x")  # the query's own row
        assert by_hand.credential is not None and by_hand.organization.oid == tenant.oid

    assert model_to_dict(by_hand) == model_to_dict(by_orm) and by_hand.id == by_orm.id
    assert (by_hand.created_at, by_hand.updated_at) == (by_orm.created_at, by_orm.updated_at)
    assert by_hand.organization.oid == tenant.oid
    assert by_hand.credential is not None
    assert (by_hand.credential.account_sid, by_hand.credential.auth_token) == (tenant.account_sid, tenant.auth_token)
    assert by_hand.credential.usable and by_hand.credential.rejected_at is None


def test_a_delivery_without_credential_reads_as_none_and_a_missing_one_as_nothing(
    tenant: Tenant, django_assert_num_queries: Any
) -> None:
    delivery = make_delivery(tenant, credential=None)

    with django_assert_num_queries(2):  # the delivery, then its (absent) credential; none on first use
        found = sql.delivery_for_claim(delivery.id)
        assert found is not None
        sql.credential_read(found)
        assert found.credential_id is None and found.credential is None
    assert sql.delivery_for_claim("00000000-0000-0000-0000-000000000000") is None


def test_an_attempt_opened_and_finished_by_hand_is_stored_as_the_orm_would_store_it(tenant: Tenant) -> None:
    delivery = make_delivery(tenant, resend_reason="on call changed")
    now = timezone.now()

    attempt = attempt_open(delivery=delivery, trigger=Attempt.Trigger.AUTOMATIC, now=now, reason="why")
    assert attempt_finish(
        attempt=attempt,
        now=now,
        outcome=Attempt.Outcome.ACCEPTED,
        delivery={"status": Delivery.Status.QUEUED, "twilio_sid": "SM1", "sent_at": now},
        http_status=201,
        twilio_request_id="RQ1",
        duration_ms=7,
    )
    assert not attempt_finish(attempt=attempt, now=now, outcome="failed", delivery={"status": "failed"})

    stored = Attempt.objects.get()
    assert (stored.id, stored.number, stored.trigger, stored.reason, stored.started_at, stored.finished_at) == (
        attempt.id,
        1,
        "automatic",
        "why",
        now,
        now,
    )
    assert (stored.outcome, stored.http_status, stored.twilio_request_id, stored.duration_ms) == (
        "accepted",
        201,
        "RQ1",
        7,
    )
    delivery.refresh_from_db()
    assert (delivery.status, delivery.twilio_sid, delivery.sent_at, delivery.claimed_at) == ("queued", "SM1", now, now)
    assert (delivery.attempt_count, delivery.last_trigger, delivery.last_outcome, delivery.resend_reason) == (
        1,
        "automatic",
        "accepted",
        "",
    )


def test_deliveries_inserted_by_hand_are_stored_as_bulk_create_stores_them(tenant: Tenant) -> None:
    template = make_delivery(tenant)
    fields = {
        f.attname: getattr(template, f.attname)
        for f in Delivery._meta.concrete_fields
        if f.attname not in ("id", "idempotency_key", "created_at", "updated_at", "truncated", "due_at")
    }
    by_hand = Delivery(**fields, idempotency_key="by-hand", truncated=True, due_at=timezone.now())
    by_orm = Delivery(**fields, idempotency_key="by-orm", truncated=True, due_at=by_hand.due_at)

    sql.together(sql.inserting_objects([by_hand]))
    sql.stored([by_hand])
    Delivery.objects.bulk_create([by_orm])

    stored_by_hand, stored_by_orm = Delivery.objects.get(id=by_hand.id), Delivery.objects.get(id=by_orm.id)
    assert model_to_dict(stored_by_hand, exclude=["idempotency_key"]) == model_to_dict(
        stored_by_orm, exclude=["idempotency_key"]
    )
    assert stored_by_hand.created_at == by_hand.created_at and stored_by_hand.created_at is not None
    assert not by_hand._state.adding


def test_a_value_skips_the_orms_adaptation_only_where_the_orm_would_pass_it_unchanged(tenant: Tenant) -> None:
    from django.db import connection, connections

    from deliveries.fields import EncryptedTextField
    from deliveries.models import AlertRequest, Credential

    delivery = make_delivery(tenant)
    credential = Credential.objects.get(id=delivery.credential_id)
    request = AlertRequest(organization_id=delivery.organization_id, idempotency_key="k", reply={"deliveries": []})
    cases = [
        (field, field.pre_save(obj, add=True))
        for obj in (delivery, credential, request)
        for field in type(obj)._meta.concrete_fields
    ]
    cases += [
        (Delivery._meta.get_field("status"), Delivery.Status.PENDING),  # a choices enum, a str subclass
        (Delivery._meta.get_field("segments"), True),  # a bool where an integer is kept
        (Delivery._meta.get_field("body"), None),
    ]
    assert any(isinstance(field, EncryptedTextField) for field, _ in cases)  # adapted by its own class

    db, plain = sql._db(), sql._plain_fields(connection.vendor)
    assert db is connections["default"]  # the connection itself, not django.db.connection's stand-in
    for field, value in cases:
        by_orm = field.get_db_prep_save(value, connection)
        by_hand = sql._adapted(field, value, db, plain)
        if isinstance(field, EncryptedTextField):  # encrypted anew each time: compare what it decrypts to
            assert by_hand != value and field.from_db_value(by_hand, None, connection) == value
            continue
        # (psycopg's wrappers, such as Jsonb, do not compare by value: their .obj does)
        assert (type(by_hand), getattr(by_hand, "obj", by_hand)) == (type(by_orm), getattr(by_orm, "obj", by_orm)), (
            field.name
        )


def _statements_run(action: Any) -> list[tuple[str, bool]]:
    """Each statement `action` runs, with whether it ran inside a transaction."""
    from django.db import connection

    seen: list[tuple[str, bool]] = []

    def watch(execute: Any, statement: str, params: Any, many: bool, context: Any) -> Any:
        seen.append((statement, connection.in_atomic_block))
        return execute(statement, params, many, context)

    with connection.execute_wrapper(watch):
        action()
    return seen


@pytest.mark.django_db(transaction=True)  # autocommit, as in the worker
def test_opening_and_finishing_an_attempt_are_one_statement_each_on_postgresql(tenant: Tenant) -> None:
    from django.db import connection, transaction

    delivery, now = make_delivery(tenant), timezone.now()
    opened: list[Attempt] = []

    def open_in_the_claims_transaction() -> None:
        with transaction.atomic():
            opened.append(attempt_open(delivery=delivery, trigger=Attempt.Trigger.AUTOMATIC, now=now))

    opening = _statements_run(open_in_the_claims_transaction)
    finishing = _statements_run(
        lambda: attempt_finish(attempt=opened[0], now=now, outcome="accepted", delivery={"status": "queued"})
    )

    if connection.vendor == "postgresql":
        assert [s.startswith("WITH written_0 AS (UPDATE") for s, _ in opening + finishing] == [True, True]
        assert [in_transaction for _, in_transaction in finishing] == [False]  # no BEGIN, no COMMIT
    else:  # SQLite: two statements each, the finishing pair in a transaction of its own
        assert [s.split()[0] for s, _ in opening + finishing] == ["UPDATE", "INSERT", "UPDATE", "UPDATE"]
        assert [in_transaction for _, in_transaction in finishing] == [True, True]
    assert Attempt.objects.get(id=opened[0].id).outcome == "accepted"
    assert Delivery.objects.get(id=delivery.id).status == "queued"


@pytest.mark.django_db(transaction=True)
def test_an_attempt_is_not_finished_when_its_delivery_cannot_be_written(tenant: Tenant) -> None:
    from django.db import IntegrityError, transaction

    delivery, now = make_delivery(tenant), timezone.now()
    with transaction.atomic():
        attempt = attempt_open(delivery=delivery, trigger=Attempt.Trigger.AUTOMATIC, now=now)

    with pytest.raises(IntegrityError):  # status is NOT NULL: the delivery's half fails
        attempt_finish(attempt=attempt, now=now, outcome="accepted", delivery={"status": None})

    stored = Attempt.objects.get(id=attempt.id)
    assert (stored.finished_at, stored.outcome) == (None, "")  # both or neither
    assert Delivery.objects.get(id=delivery.id).status == "sending"
    assert attempt_finish(attempt=attempt, now=now, outcome="accepted", delivery={"status": "queued"})


def test_no_index_holds_the_organisation_alone_so_a_claims_prepared_counts_read_only_the_window() -> None:
    """With an index on a delivery's organisation alone, PostgreSQL could plan the claim's prepared flood
    counts (the generic plan, made once for any organisation) with it and read the organisation's every
    delivery, not the window's: 18-21 ms a claim at 60,000 deliveries. The (organisation, claimed_at)
    index serves them."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Delivery._meta.db_table)
    leading = {
        name: c["columns"] for name, c in constraints.items() if c["index"] and c["columns"][:1] == ["organization_id"]
    }
    assert ["organization_id"] not in leading.values(), leading
    assert ["organization_id", "claimed_at"] in leading.values(), leading


def test_a_delivery_s_links_that_are_almost_always_empty_are_indexed_only_where_set(tenant: Tenant) -> None:
    """A full index takes an entry for every version of every row, and every write of a delivery makes a
    new version of it with a new entry in each full index (none is a HOT update). The summary, the text a
    call escalates and the operator who asked for a resend are almost always empty: indexed where set,
    and still used to find a summary's held-back alerts."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Delivery._meta.db_table)
    by_columns = {tuple(c["columns"]): name for name, c in constraints.items() if c["index"]}
    for column in ("summary_id", "escalates_id", "resend_by_id"):
        assert by_columns.get((column,)) == f"delivery_{column.removesuffix('_id')}", by_columns
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, sql FROM sqlite_master WHERE tbl_name = %s AND type = 'index'"
            if connection.vendor == "sqlite"
            else "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s",
            [Delivery._meta.db_table],
        )
        definitions = dict(cursor.fetchall())
    for name in ("delivery_summary", "delivery_escalates", "delivery_resend_by"):
        assert "WHERE" in definitions[name] and "NOT NULL" in definitions[name].upper(), definitions[name]

    summary = make_delivery(tenant, kind=Delivery.Kind.SUMMARY, to_number="+15005550009")
    held = [make_delivery(tenant, status="suppressed", hold="duplicate", summary=summary) for _ in range(2)]
    others = [make_delivery(tenant, to_number=f"+1500555{n:04d}") for n in range(20)]
    found = Delivery.objects.filter(summary=summary)
    if connection.vendor == "postgresql":  # a table this small is read whole when it may be; may it not?
        with connection.cursor() as cursor:
            cursor.execute("SET enable_seqscan = off")
        try:
            plan = found.explain()
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET enable_seqscan")
    else:
        plan = found.explain()

    assert sorted(d.id for d in found) == sorted(d.id for d in held) and len(others) == 20
    assert "delivery_summary" in plan, plan
