"""Accepting alerts: one `run` call becomes one AlertRequest (the alert) and one pending Delivery per
recipient, stored with the organisation's credential in one transaction, and enqueued once that
commits. The AlertRequest, unique per idempotency key, is the durable defence against replays and
LimaCharlie's retries."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from deliveries.models import AlertRequest, Credential, Delivery, Organization
from deliveries.services import approvals, escalate, queue
from deliveries.services.credentials import credential_for
from deliveries.sms import PreparedBody

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    reply: dict[str, Any]
    duplicate: bool
    credential_id: int | None = None  # the credential its deliveries are bound to (None for a repeat)


class CredentialGone(Exception):
    """The credential a secret resolved to lately may no longer be used (erased, or refused by Twilio)."""


def alert_request_reply(*, oid: str, idempotency_key: str) -> dict[str, Any] | None:
    """The reply a previous call with this key got, or None. Read before any credential fetch, so a
    replayed or retried call costs no LimaCharlie round trip."""
    found = AlertRequest.objects.filter(organization__oid=oid, idempotency_key=idempotency_key).first()
    return None if found is None else found.reply


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
    context: Any = None,
    event_kinds: Sequence[str] | None = None,
    approval: approvals.ApprovalPlan | None = None,
) -> Accepted:
    """Store the alert and one pending Delivery per recipient, bound to the credential the call brought
    (read from the Secrets Manager, or the stored one its secret resolved to lately, `credential_id`), in
    one transaction; enqueue their sends once it commits. A concurrent or replayed call with the same key
    gets the first reply and creates nothing. CredentialGone: the remembered credential may not be used.
    `from_secrets_manager`: the SID and token were read with a JWT, not pasted into the rule."""
    now = timezone.now()
    first, later = ack.split(recipients) if ack else (list(recipients), [])
    try:
        with transaction.atomic():
            organization = Organization.objects.get_or_create(oid=oid)[0]
            credential = _credential(organization, credential_id, account_sid, auth_token, now, from_secrets_manager)
            deliveries = [
                Delivery(
                    organization=organization,
                    credential=credential,
                    idempotency_key=idempotency_key,
                    **_message(ident=ident, inv_id=inv_id, from_number=from_number, to=to, body=body, now=now),
                    **escalate.ack_fields(ack, organization_id=organization.id, to=to),
                )
                for to in first
            ]
            code = approvals.code_new(organization_id=organization.id, recipients=list(recipients)) if approval else ""
            if approval is not None:  # the question, its code and its timeout, the same for everyone asked
                for delivery in deliveries:
                    delivery.body += approvals.instruction(approval, code)
            reply = _reply(deliveries, body) | ({"next": later} if later else {}) | ({"code": code} if code else {})
            alert = AlertRequest.objects.create(
                organization=organization,
                idempotency_key=idempotency_key,
                reply=reply,
                context=context,  # echoed in every event about the alert (services.events)
                event_kinds=None if event_kinds is None else list(event_kinds),
            )
            for delivery in deliveries:
                delivery.alert = alert
            Delivery.objects.bulk_create(deliveries)
            escalate.timers_plan(alerts=deliveries, plan=ack, later=later, now=now)  # enqueued on commit
            if approval is not None:
                approvals.approval_open(alert=alert, plan=approval, code=code, now=now)  # its timeout on commit
            ids = [str(d.id) for d in deliveries]
            transaction.on_commit(lambda: queue.send(ids))
    except IntegrityError:
        # Another call with this key committed first (LimaCharlie retried while we were working).
        previous = alert_request_reply(oid=oid, idempotency_key=idempotency_key)
        if previous is None:
            raise
        return Accepted(previous, duplicate=True)
    logger.info("accepted %d deliveries for org %s key %s", len(ids), oid, idempotency_key)
    return Accepted(reply, duplicate=False, credential_id=credential.id)


def _credential(
    organization: Organization,
    credential_id: int | None,
    account_sid: str,
    auth_token: str,
    now: datetime,
    from_secrets_manager: bool,
) -> Credential:
    """The remembered credential, checked again in the accepting transaction, or the one the call
    brought from the Secrets Manager, found or stored."""
    if credential_id is not None:
        remembered = Credential.objects.usable().filter(id=credential_id, organization=organization).first()
        if remembered is None:
            raise CredentialGone()
        return remembered
    return credential_for(
        organization=organization,
        account_sid=account_sid,
        auth_token=auth_token,
        now=now,
        from_secrets_manager=from_secrets_manager,
    )


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
