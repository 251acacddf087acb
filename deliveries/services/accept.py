"""Accepting alerts: one `run` call becomes one pending Delivery per recipient, stored with the
organisation's credential in one transaction, and enqueued once that commits. The AlertRequest row,
unique per idempotency key, is the durable defence against replays and LimaCharlie's retries."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from deliveries.models import AlertRequest, Delivery, Organization
from deliveries.services import codes as ack_codes
from deliveries.services import credentials, escalate, queue, sql
from deliveries.services.credentials import credential_for
from deliveries.sms import PreparedBody

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Seen:
    """What the intake reads before it accepts: the organisation's row id (None: it never called); the
    reply a previous call with this key got (None: the key is new); whether the credential asked about
    may be used (credentials.USABLE; None: none was asked about, or the organisation never called); and
    the codes the unacknowledged alerts of the recipients asked about hold, by recipient
    (codes.OUTSTANDING)."""

    organization_id: int | None
    reply: dict[str, Any] | None
    credential_usable: bool | None = None
    outstanding: dict[str, set[str]] = field(default_factory=dict)


def alert_request_seen(
    *, oid: str, idempotency_key: str, credential_id: int | None = None, recipients: Sequence[str] = ()
) -> Seen:
    """The organisation and the previous reply for this key, in one read. Made before any credential
    fetch so a replayed or retried call costs no LimaCharlie API round trip; the organisation's id then
    spares the accepting transaction a read (organisations are never deleted). The same read checks
    `credential_id` (the credential this web process remembers for the call's secret) and reads the
    `recipients`' outstanding codes, so that a call accepted without a transaction reads nothing more
    (deliveries_accept, `seen`): one round trip instead of two on PostgreSQL, where a round trip cost a
    web process about 0.2 ms of CPU per call under load (measured for issue 9). On SQLite, which has no
    round trip to save, they are left to the accepting transaction."""
    # Hand-written SQL (plain on SQLite and PostgreSQL): every `run` call makes this read, and the ORM
    # spent more CPU compiling it than the database spent answering it. The reply column arrives as JSON
    # text on both backends (Django loads PostgreSQL's jsonb as text too) and the field has no decoder.
    if connection.vendor != "postgresql":
        # SQLite's accepting transaction reads them anyway (deliveries_accept): its reads are exact there.
        credential_id, recipients = None, ()
    usable, codes_read, joined = "NULL", "NULL, NULL", ""
    params: list[Any] = []
    if credential_id is not None:
        usable = f"EXISTS (SELECT 1 FROM deliveries_credential WHERE {credentials.USABLE.format(organization='o.id')})"
        params.append(credential_id)
    params.append(idempotency_key)
    if recipients:
        codes_read = "d.to_number, d.ack_code"
        outstanding = ack_codes.OUTSTANDING.format(d="d.", organization="o.id")
        joined = f" LEFT JOIN deliveries_delivery d ON {outstanding} IN ({', '.join(['%s'] * len(recipients))})"
        params.extend(recipients)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT o.id, a.reply, {usable}, {codes_read} FROM deliveries_organization o"
            " LEFT JOIN deliveries_alertrequest a ON a.organization_id = o.id AND a.idempotency_key = %s"
            f"{joined} WHERE o.oid = %s",
            [*params, oid],
        )
        rows = cursor.fetchall()
    if not rows:
        return Seen(organization_id=None, reply=None)
    org_id, raw_reply, usable_found = rows[0][:3]
    by_recipient: dict[str, set[str]] = {}
    for *_, to, code in rows:
        if to is not None:
            by_recipient.setdefault(to, set()).add(code)
    return Seen(
        organization_id=int(org_id),
        reply=json.loads(raw_reply) if isinstance(raw_reply, str) else raw_reply,
        credential_usable=None if usable_found is None else bool(usable_found),
        outstanding=by_recipient,
    )


def alert_request_reply(*, oid: str, idempotency_key: str) -> dict[str, Any] | None:
    """The reply a previous call with this key got, or None."""
    return alert_request_seen(oid=oid, idempotency_key=idempotency_key).reply


def _organization_id(oid: str) -> int:
    """The organisation's row id, created the first time it calls. Hand-written SQL for the common case
    (it exists) for the same reason as above; get_or_create only for a first call, which it keeps safe
    against a concurrent first call. Organisations are never deleted (PROTECT, read-only admin)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM deliveries_organization WHERE oid = %s", [oid])
        row = cursor.fetchone()
    if row is not None:
        return int(row[0])
    return Organization.objects.get_or_create(oid=oid)[0].id


@dataclass(frozen=True)
class Accepted:
    reply: dict[str, Any]
    duplicate: bool
    credential_id: int | None = None  # the credential its deliveries are bound to (None for a repeat)


class CredentialGone(Exception):
    """The credential a secret resolved to lately may no longer be used."""


def deliveries_accept(
    *,
    oid: str,
    idempotency_key: str,
    ident: str,
    inv_id: str,
    from_number: str,
    recipients: Sequence[str],
    body: PreparedBody,
    account_sid: str = "",
    auth_token: str = "",
    from_secrets_manager: bool = False,
    credential_id: int | None = None,
    ack: escalate.AckPlan | None = None,
    organization_id: int | None = None,
    seen: Seen | None = None,
) -> Accepted:
    """Store one pending Delivery per recipient, bound to the credential the call brought (its SID and
    token as read from the Secrets Manager, or the stored one it resolved to lately, `credential_id`),
    in one transaction, and enqueue their sends once it commits. A concurrent or replayed call with the
    same key gets the first call's reply and creates nothing. CredentialGone: the remembered credential
    may no longer be used (erased, or refused by Twilio); read the secret again. `organization_id`:
    the organisation's row id when the caller has read it already (alert_request_seen); `seen`: that
    read, made with `credential_id` and every recipient (their codes are read only when the texts carry
    codes). `from_secrets_manager`: the SID and token were read from the Secrets Manager with a JWT,
    not pasted into the rule (credentials.credential_for)."""
    now = timezone.now()
    first, later = ack.split(recipients) if ack else (list(recipients), [])  # issue 11: `next`
    # On PostgreSQL, a call whose credential was remembered and that starts no escalation timer writes
    # one statement (sql.together), atomic by itself, so it needs no transaction: two round trips fewer
    # (BEGIN, COMMIT). Its reads see what they would see in one: each statement of a READ COMMITTED
    # transaction reads what was committed when it started, and none of them locks. SQLite keeps the
    # transaction: that is how its writers take turns, and what makes its reads exact.
    alone = (
        connection.vendor == "postgresql"
        and credential_id is not None
        and organization_id is not None
        and not escalate.timers_planned(ack, later)
    )
    # Without a transaction, the caller's read a moment ago is as good as one made here: neither locks,
    # and each reads what was committed when it ran. In a transaction, everything is read in it.
    prior = seen if alone and seen is not None and seen.credential_usable else None
    try:
        with nullcontext() if alone else transaction.atomic():
            org_id = organization_id if organization_id is not None else _organization_id(oid)
            if prior is not None:
                usable, outstanding = True, prior.outstanding
            else:
                usable, outstanding = _reads(org_id, credential_id, first, codes=bool(ack and ack.codes))
            if not usable:
                raise CredentialGone()
            bound = credential_id or _credential_stored(org_id, oid, account_sid, auth_token, now, from_secrets_manager)
            common = {"organization_id": org_id, "credential_id": bound, "idempotency_key": idempotency_key}
            deliveries = [
                Delivery(
                    **common,
                    **_message(ident=ident, inv_id=inv_id, from_number=from_number, to=to, body=body, now=now),
                    **escalate.ack_fields(ack, organization_id=org_id, to=to, outstanding=outstanding.get(to, set())),
                )
                for to in first
            ]
            reply = _reply(deliveries, body) | ({"next": later} if later else {})
            # By hand (bulk_create's compilation cost more than the insert), and as one statement on
            # PostgreSQL (sql.together): the deliveries, then the key's AlertRequest.
            sql.together(
                *([sql.inserting_objects(deliveries)] if deliveries else []),
                sql.inserting(
                    AlertRequest,
                    {"organization": org_id, "idempotency_key": idempotency_key, "reply": reply, "created_at": now},
                ),
            )
            sql.stored(deliveries)
            escalate.timers_plan(alerts=deliveries, plan=ack, later=later, now=now)  # enqueued on commit
            ids = [str(d.id) for d in deliveries]
            # Once the rows are committed: at once when there is no transaction (Django runs it then).
            transaction.on_commit(lambda: queue.send(ids))
    except IntegrityError:
        # Another call with this key committed first (LimaCharlie retried while we were working).
        previous = alert_request_reply(oid=oid, idempotency_key=idempotency_key)
        if previous is None:
            raise
        return Accepted(previous, duplicate=True)
    logger.info("accepted %d deliveries for org %s key %s", len(ids), oid, idempotency_key)
    return Accepted(reply, duplicate=False, credential_id=bound)


def _reads(
    org_id: int, credential_id: int | None, recipients: Sequence[str], *, codes: bool
) -> tuple[bool, dict[str, set[str]]]:
    """In one read: whether the credential the call's secret resolved to lately is still usable
    (credentials.USABLE; True when there is none to check), and, when the texts carry codes, the codes
    each recipient's unacknowledged alerts hold (codes.OUTSTANDING), so that a new one differs. With
    neither to read, no read."""
    if credential_id is None and not (codes and recipients):
        return True, {}
    usable = "SELECT 1 AS usable"  # no credential to check
    params: list[Any] = []
    if credential_id is not None:
        condition = credentials.USABLE.format(organization="%s")
        usable = f"SELECT EXISTS (SELECT 1 FROM deliveries_credential WHERE {condition}) AS usable"
        params = [credential_id, org_id]
    statement = f"SELECT u.usable, NULL, NULL FROM ({usable}) u"
    if codes and recipients:
        statement = (
            f"SELECT u.usable, d.to_number, d.ack_code FROM ({usable}) u LEFT JOIN deliveries_delivery d"
            f" ON {ack_codes.OUTSTANDING.format(d='d.', organization='%s')} IN ({', '.join(['%s'] * len(recipients))})"
        )
        params = [*params, org_id, *recipients]
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    outstanding: dict[str, set[str]] = {}
    for _, to, code in rows:
        if to is not None:
            outstanding.setdefault(to, set()).add(code)
    return bool(rows[0][0]), outstanding


def _credential_stored(
    org_id: int, oid: str, account_sid: str, auth_token: str, now: datetime, from_secrets_manager: bool
) -> int:
    """The id of the credential the call brought (from the Secrets Manager, or inline), found or stored."""
    org = Organization(id=org_id, oid=oid)  # what credential_for needs: the row's key, and oid for its log
    return credential_for(
        organization=org,
        account_sid=account_sid,
        auth_token=auth_token,
        now=now,
        from_secrets_manager=from_secrets_manager,
    ).id


def _message(
    *, ident: str, inv_id: str, from_number: str, to: str, body: PreparedBody, now: datetime
) -> dict[str, Any]:
    """One recipient's delivery fields, pending and due now."""
    return {
        "ident": ident[:255],
        "inv_id": inv_id[:255],
        "from_number": from_number,
        "to_number": to,
        "body": body.text,
        "original_length": body.original_length,
        "truncated": body.truncated,
        "encoding": body.encoding,
        "segments": body.segments,
        "due_at": now,
    }


def _reply(deliveries: list[Delivery], body: PreparedBody) -> dict[str, Any]:
    """What LimaCharlie gets back (and a repeat of the call gets again)."""
    return {
        "deliveries": [
            {"id": str(d.id), "to": d.to_number, "status": d.status, **({"ack_code": d.ack_code} if d.ack_code else {})}
            for d in deliveries
        ],
        "segments": body.segments,
        "truncated": body.truncated,
    }
