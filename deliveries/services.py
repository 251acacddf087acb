"""Every write to the delivery domain. Views, tasks, admin and commands call these and nothing else.

Rules kept here: persist first, then act; no network call inside a transaction; a delivery is
claimed with a conditional UPDATE before its POST, so two workers can never both send it.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from config import logcontext
from deliveries import gateway, metrics
from deliveries.gateway import Outcome
from deliveries.models import AlertRequest, Attempt, Delivery, ErrorReport, Organization
from deliveries.sms import PreparedBody

logger = logging.getLogger(__name__)
Status = Delivery.Status


# --- organisations -------------------------------------------------------------------------------


def organization_record_event(*, oid: str, event_name: str) -> Organization:
    """Record a subscribe / unsubscribe / update event. Leaving erases the stored credential: an org
    that unsubscribed has withdrawn its consent to our holding its Twilio token."""
    now = timezone.now()
    with transaction.atomic():
        org, _ = Organization.objects.select_for_update().get_or_create(oid=oid)
        org.last_event_at = now
        if event_name == "subscribe":
            org.subscription, org.subscribed_at = Organization.Subscription.SUBSCRIBED, now
        elif event_name == "unsubscribe":
            org.subscription, org.unsubscribed_at = Organization.Subscription.UNSUBSCRIBED, now
            org.twilio_account_sid, org.twilio_auth_token, org.credential_refreshed_at = "", "", None
        elif event_name == "update" and org.subscription != Organization.Subscription.SUBSCRIBED:
            # A daily update proves the org is subscribed even if we missed its subscribe event.
            org.subscription = Organization.Subscription.SUBSCRIBED
            org.subscribed_at = org.subscribed_at or now
        org.save()
    logger.info("organisation event %s for org %s", event_name, oid)
    return org


def organizations_reencrypt() -> int:
    """Re-save every stored credential, so it is encrypted with the first FIELD_ENCRYPTION_KEY and
    the old key can then be dropped."""
    count = 0
    for org in Organization.objects.exclude(twilio_auth_token="").iterator():
        org.save(update_fields=["twilio_auth_token"])
        count += 1
    return count


def error_report_record(*, oid: str, error: str) -> ErrorReport:
    report = ErrorReport.objects.create(oid=oid[:64], error=error)
    logger.warning("LimaCharlie error report for org %s: %s", oid or "-", error[:2000])
    return report


# --- intake ---------------------------------------------------------------------------------------


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
) -> Accepted:
    """Store the credential and one pending Delivery per recipient in one transaction, and enqueue
    their sends once it commits. A concurrent or replayed call with the same key gets the first
    call's reply and creates nothing."""
    now = timezone.now()
    try:
        with transaction.atomic():
            org, _ = Organization.objects.get_or_create(oid=oid)
            if _credential_needs_saving(org, account_sid, auth_token, now):
                org.twilio_account_sid, org.twilio_auth_token, org.credential_refreshed_at = account_sid, auth_token, now
                org.save(update_fields=["twilio_account_sid", "twilio_auth_token", "credential_refreshed_at", "updated_at"])
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
                )
                for to in recipients
            ]
            Delivery.objects.bulk_create(deliveries)
            reply = {
                "deliveries": [{"id": str(d.id), "to": d.to_number, "status": d.status} for d in deliveries],
                "segments": body.segments,
                "truncated": body.truncated,
            }
            AlertRequest.objects.create(organization=org, idempotency_key=idempotency_key, reply=reply)
            ids = [str(d.id) for d in deliveries]
            transaction.on_commit(lambda: enqueue_sends(ids))
    except IntegrityError:
        # Another call with this key committed first (LimaCharlie retried while we were working).
        previous = alert_request_reply(oid=oid, idempotency_key=idempotency_key)
        if previous is None:
            raise
        return Accepted(previous, duplicate=True)
    logger.info("accepted %d deliveries for org %s key %s", len(ids), oid, idempotency_key)
    return Accepted(reply, duplicate=False)


# How stale `credential_refreshed_at` may get while the credential itself is unchanged.
CREDENTIAL_REFRESH_GRANULARITY = timedelta(seconds=60)


def _credential_needs_saving(org: Organization, account_sid: str, auth_token: str, now: Any) -> bool:
    """Write the organisation row only when the credential changed, or its refresh time is over a
    minute old. Every `run` call of a burst comes from the same organisation: an UPDATE each time
    would make their transactions queue on that one row's lock (measured by `make bench`)."""
    return (
        org.twilio_account_sid != account_sid
        or org.twilio_auth_token != auth_token
        or org.credential_refreshed_at is None
        or now - org.credential_refreshed_at >= CREDENTIAL_REFRESH_GRANULARITY
    )


def enqueue_sends(delivery_ids: Sequence[str], trigger: str = Attempt.Trigger.AUTOMATIC) -> None:
    """Hand deliveries to Celery. If the broker is down the rows stay `pending` and committed, so
    nothing accepted is lost: they are sent when a later sweep enqueues them again."""
    from deliveries.tasks import send_delivery

    for delivery_id in delivery_ids:
        try:
            send_delivery.delay(delivery_id, trigger)
        except Exception:  # noqa: BLE001 - kombu raises many types; the row is safe either way
            logger.exception("could not enqueue delivery %s; it stays pending", delivery_id)


# --- sending -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendDecision:
    """What the task should do next: nothing, or send again after `retry_in` seconds."""

    status: str
    retry_in: float | None = None


def delivery_send(*, delivery_id: str, trigger: str = Attempt.Trigger.AUTOMATIC) -> SendDecision:
    """Claim a pending delivery, make one attempt, and record what Twilio said."""
    now = timezone.now()
    claimed = Delivery.objects.filter(id=delivery_id, status=Status.PENDING).update(
        status=Status.SENDING, claimed_at=now, attempt_count=F("attempt_count") + 1, updated_at=now
    )
    if not claimed:
        # Already claimed by another worker, or a redelivered task for a finished delivery.
        current = Delivery.objects.filter(id=delivery_id).values_list("status", flat=True).first()
        logger.info("delivery %s not pending (%s); nothing to send", delivery_id, current)
        return SendDecision(status=current or "missing")

    delivery = Delivery.objects.select_related("organization").get(id=delivery_id)
    logcontext.bind(oid=delivery.organization.oid, idempotency_key=delivery.idempotency_key)  # for log lines
    attempt = Attempt.objects.create(
        delivery=delivery, number=delivery.attempt_count, trigger=trigger, started_at=now
    )
    org = delivery.organization
    if not org.has_credential:
        result = gateway.SendResult(
            outcome=Outcome.PERMANENT,
            duration_ms=0,
            twilio_message="No Twilio credential is stored for this organisation (it unsubscribed).",
        )
    else:
        result = gateway.send_sms(
            account_sid=org.twilio_account_sid,
            auth_token=org.twilio_auth_token,
            to=delivery.to_number,
            from_=delivery.from_number,
            body=delivery.body,
            validity_period=settings.TWILIO_VALIDITY_PERIOD,
        )
        metrics.twilio_call(result.outcome.value, result.duration_ms)
    return _record_result(delivery, attempt, result)


def _record_result(delivery: Delivery, attempt: Attempt, result: gateway.SendResult) -> SendDecision:
    now = timezone.now()
    retry_in: float | None = None
    fields: dict[str, Any] = {"updated_at": now}
    if result.outcome == Outcome.ACCEPTED:
        status = Status.ACCEPTED if result.twilio_status == "accepted" else Status.QUEUED
        fields.update(status=status, twilio_sid=result.sid, sent_at=now, error_code=None, error_message="")
    elif result.outcome == Outcome.NOT_PROCESSED and _may_retry(delivery, now):
        retry_in = retry_delay(delivery.attempt_count)
        fields.update(status=Status.PENDING, error_code=result.twilio_code, error_message=result.twilio_message)
    elif result.outcome == Outcome.AMBIGUOUS:
        # The message may exist. Re-POSTing could text the on-call engineer twice, so it waits for
        # reconciliation or an operator's decision.
        fields.update(status=Status.AMBIGUOUS, error_code=result.twilio_code, error_message=result.twilio_message)
    else:
        message = result.twilio_message
        if result.outcome == Outcome.NOT_PROCESSED:
            message = f"Gave up after {delivery.attempt_count} attempts: {message}"
        fields.update(
            status=Status.FAILED, settled_at=now, error_code=result.twilio_code, error_message=message[:1000]
        )
    with transaction.atomic():
        Attempt.objects.filter(id=attempt.id, finished_at__isnull=True).update(
            finished_at=now,
            outcome=result.outcome.value,
            http_status=result.http_status,
            twilio_code=result.twilio_code,
            twilio_message=result.twilio_message,
            twilio_request_id=result.twilio_request_id,
            duration_ms=result.duration_ms,
        )
        # Only the claim we hold may be resolved: if something else moved the row meanwhile, keep it.
        Delivery.objects.filter(id=delivery.id, status=Status.SENDING).update(**fields)
    metrics.attempt_finished(result.outcome.value)
    logger.info(
        "delivery %s attempt %d: %s (http %s, code %s, %s)",
        delivery.id,
        attempt.number,
        result.outcome.value,
        result.http_status,
        result.twilio_code,
        result.twilio_message or "-",
    )
    return SendDecision(status=str(fields.get("status", delivery.status)), retry_in=retry_in)


def _may_retry(delivery: Delivery, now: Any) -> bool:
    deadline = delivery.created_at + timedelta(seconds=settings.SEND_DEADLINE_SECONDS)
    return delivery.attempt_count < settings.SEND_MAX_ATTEMPTS and now < deadline


def retry_delay(attempts_made: int) -> float:
    """Exponential backoff with ±20 % jitter: base, 2×base, 4×base… capped. Jitter keeps a burst
    that hit Twilio's concurrency cap from coming back all at the same instant."""
    base = min(settings.SEND_RETRY_MAX_SECONDS, settings.SEND_RETRY_BASE_SECONDS * 2 ** max(0, attempts_made - 1))
    return base * random.uniform(0.8, 1.2)
