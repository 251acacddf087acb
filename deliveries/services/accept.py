"""Accepting alerts: one `run` call becomes one pending Delivery per recipient, stored with the
organisation's credential in one transaction, and enqueued once that commits. The AlertRequest row,
unique per idempotency key, is the durable defence against replays and LimaCharlie's retries."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from deliveries.models import AlertRequest, Delivery, Organization
from deliveries.services import escalate, queue
from deliveries.sms import PreparedBody

logger = logging.getLogger(__name__)

# How stale `credential_refreshed_at` may get while the credential itself is unchanged.
CREDENTIAL_REFRESH_GRANULARITY = timedelta(seconds=60)


def alert_request_reply(*, oid: str, idempotency_key: str) -> dict[str, Any] | None:
    """The reply a previous call with this key got, or None. Checked before any credential fetch so
    a replayed or retried call costs no LimaCharlie API round trip."""
    found = AlertRequest.objects.filter(organization__oid=oid, idempotency_key=idempotency_key).first()
    return found.reply if found else None


@dataclass(frozen=True)
class Accepted:
    reply: dict[str, Any]
    duplicate: bool


def deliveries_accept(
    *,
    oid: str,
    idempotency_key: str,
    ident: str,
    inv_id: str,
    from_number: str,
    recipients: Sequence[str],
    body: PreparedBody,
    account_sid: str,
    auth_token: str,
    ack: escalate.AckPlan | None = None,
) -> Accepted:
    """Store the credential and one pending Delivery per recipient in one transaction, and enqueue
    their sends once it commits. A concurrent or replayed call with the same key gets the first
    call's reply and creates nothing."""
    now = timezone.now()
    try:
        with transaction.atomic():
            org, _ = Organization.objects.get_or_create(oid=oid)
            _save_credential(org, account_sid, auth_token, now)
            first, later = ack.split(recipients) if ack else (list(recipients), [])  # issue 11: `next`
            deliveries = [
                Delivery(
                    organization=org,
                    idempotency_key=idempotency_key,
                    ident=ident[:255],
                    inv_id=inv_id[:255],
                    from_number=from_number,
                    to_number=to,
                    body=body.text,
                    original_length=body.original_length,
                    truncated=body.truncated,
                    encoding=body.encoding,
                    segments=body.segments,
                    due_at=now,
                    **escalate.ack_fields(ack, organization_id=org.id, to=to),
                )
                for to in first
            ]
            Delivery.objects.bulk_create(deliveries)
            escalate.timers_plan(alerts=deliveries, plan=ack, later=later, now=now)  # enqueued on commit
            reply = _reply(deliveries, body) | ({"next": later} if later else {})
            AlertRequest.objects.create(organization=org, idempotency_key=idempotency_key, reply=reply)
            ids = [str(d.id) for d in deliveries]
            transaction.on_commit(lambda: queue.send(ids))
    except IntegrityError:
        # Another call with this key committed first (LimaCharlie retried while we were working).
        previous = alert_request_reply(oid=oid, idempotency_key=idempotency_key)
        if previous is None:
            raise
        return Accepted(previous, duplicate=True)
    logger.info("accepted %d deliveries for org %s key %s", len(ids), oid, idempotency_key)
    return Accepted(reply, duplicate=False)


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


def _save_credential(org: Organization, account_sid: str, auth_token: str, now: datetime) -> None:
    """Write the organisation row only when the credential changed, or its refresh time is over a
    minute old. Every `run` call of a burst comes from the same organisation: an UPDATE each time
    would make their transactions queue on that one row's lock (measured by `make bench`)."""
    if (
        org.twilio_account_sid == account_sid
        and org.twilio_auth_token == auth_token
        and org.credential_refreshed_at is not None
        and now - org.credential_refreshed_at < CREDENTIAL_REFRESH_GRANULARITY
    ):
        return
    org.twilio_account_sid, org.twilio_auth_token, org.credential_refreshed_at = account_sid, auth_token, now
    org.save(update_fields=["twilio_account_sid", "twilio_auth_token", "credential_refreshed_at", "updated_at"])
