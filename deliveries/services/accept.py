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
    found = AlertRequest.objects.filter(organization__oid=oid, idempotency_key=idempotency_key)
    return next(iter(found.values_list("reply", flat=True)), None)  # the key is unique per organisation


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
    """Store the alert and a pending Delivery per recipient, bound to the credential the call brought (or
    the one its secret resolved to lately, `credential_id`: CredentialGone if it may not be used), in one
    transaction; enqueue their sends on commit. A replayed key gets the first reply and creates nothing."""
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
            code = _approval_asked(approval, organization.id, recipients, deliveries)
            reply = _reply(deliveries, body) | ({"next": later} if later else {}) | ({"code": code} if code else {})
            alert = _alert(organization, idempotency_key, reply, context, event_kinds)
            ids = _stored(alert, deliveries, ack, later, approval, code, now)
    except IntegrityError:
        # Another call with this key committed first (LimaCharlie retried while we were working).
        previous = alert_request_reply(oid=oid, idempotency_key=idempotency_key)
        if previous is None:
            raise
        return Accepted(previous, duplicate=True)
    logger.info("accepted %d deliveries for org %s key %s", len(ids), oid, idempotency_key)
    return Accepted(reply, duplicate=False, credential_id=credential.id)


def _alert(
    organization: Organization, key: str, reply: dict[str, Any], context: Any, event_kinds: Sequence[str] | None
) -> AlertRequest:
    """The alert, not saved yet; the rule's context is echoed in every event about it (services.events)."""
    kinds = None if event_kinds is None else list(event_kinds)
    return AlertRequest(organization=organization, idempotency_key=key, reply=reply, context=context, event_kinds=kinds)


def _approval_asked(
    approval: approvals.ApprovalPlan | None, organization_id: int, recipients: Sequence[str], texts: list[Delivery]
) -> str:
    """An approval's code, and its question's instruction added to each text ("" when it is no approval)."""
    if approval is None:
        return ""
    code = approvals.code_new(organization_id=organization_id, recipients=list(recipients))
    for text in texts:
        text.body += approvals.instruction(approval, code)
    return code


def _stored(
    alert: AlertRequest,
    texts: list[Delivery],
    ack: escalate.AckPlan | None,
    later: Sequence[str],
    approval: approvals.ApprovalPlan | None,
    code: str,
    now: datetime,
) -> list[str]:
    """The alert and its texts stored (the alert first: its unique key refuses a replay before anything
    else is written), its timers and approval opened; their tasks enqueued once it commits."""
    alert.save()
    for text in texts:
        text.alert = alert
    Delivery.objects.bulk_create(texts)
    escalate.timers_plan(alerts=texts, plan=ack, later=later, now=now)
    if approval is not None:
        approvals.approval_open(alert=alert, plan=approval, code=code, now=now)
    ids = [str(d.id) for d in texts]
    transaction.on_commit(lambda: queue.send(ids))
    return ids


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
        try:
            return Credential.objects.usable().get(id=credential_id, organization=organization)
        except Credential.DoesNotExist:
            raise CredentialGone() from None
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
