"""Every write to the delivery domain. Views, tasks, admin and commands call these and nothing else.

Rules kept here: persist first, then act; no network call inside a transaction; a delivery is
claimed with a conditional UPDATE before its POST, so two workers can never both send it.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Sequence

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from deliveries import gateway
from deliveries.gateway import Outcome
from deliveries.models import AlertRequest, Attempt, Delivery, ErrorReport, OptOut, Organization
from deliveries.sms import PreparedBody

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser as User

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


def delivery_send(
    *,
    delivery_id: str,
    trigger: str = Attempt.Trigger.AUTOMATIC,
    triggered_by_id: int | None = None,
    reason: str = "",
) -> SendDecision:
    """Claim a pending delivery, make one attempt, and record what Twilio said. A resend passes
    the operator and their reason, which are kept on its attempt (see delivery_resend)."""
    now = timezone.now()
    claimed = Delivery.objects.filter(id=delivery_id, status=Status.PENDING).update(
        status=Status.SENDING, claimed_at=now, attempt_count=F("attempt_count") + 1, updated_at=now,
        last_trigger=trigger, last_outcome="",  # the admin's filters read these (see the model)
    )
    if not claimed:
        # Already claimed by another worker, or a redelivered task for a finished delivery.
        current = Delivery.objects.filter(id=delivery_id).values_list("status", flat=True).first()
        logger.info("delivery %s not pending (%s); nothing to send", delivery_id, current)
        return SendDecision(status=current or "missing")

    delivery = Delivery.objects.select_related("organization").get(id=delivery_id)
    attempt = Attempt.objects.create(
        delivery=delivery, number=delivery.attempt_count, trigger=trigger, started_at=now,
        triggered_by_id=triggered_by_id, reason=reason,
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
    return _record_result(delivery, attempt, result)


def _record_result(delivery: Delivery, attempt: Attempt, result: gateway.SendResult) -> SendDecision:
    now = timezone.now()
    retry_in: float | None = None
    fields: dict[str, Any] = {"updated_at": now, "last_outcome": result.outcome.value}
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


# --- the audit desk: resend and opt-out clearing ------------------------------------------------

# A resend may start from any status in which no send of ours is in flight. Never from `pending`
# or `sending`: the delivery is already queued or being posted, and a second task would race it.
RESENDABLE_STATUSES = frozenset(
    {
        Status.FAILED, Status.AMBIGUOUS, Status.SUPPRESSED, Status.DELIVERED, Status.UNDELIVERED,
        Status.SENT, Status.QUEUED, Status.ACCEPTED,
    }
)


class Refused(Exception):
    """An operator's request the desk will not carry out; the message says why, for the operator."""


def delivery_resend(*, delivery: Delivery, by: User, reason: str, unusual_confirmed: bool = False) -> Delivery:
    """Put a delivery back in the queue so the ordinary send task sends it again.

    The new attempt is made by the same task and policy as any send, with trigger `resend`, the
    operator and the reason; earlier attempts are not touched. It is
    refused when it cannot work, and when it is unusual (see delivery_resend_warning) and the
    operator has not confirmed that explicitly; the Refused message is shown to them.
    """
    from deliveries.selectors import delivery_resend_refusal, delivery_resend_warning

    reason = reason.strip()
    if not reason:
        raise Refused("a reason is required")
    refusal = delivery_resend_refusal(delivery=delivery)
    if refusal:
        raise Refused(refusal)
    warning = delivery_resend_warning(delivery=delivery)
    if warning and not unusual_confirmed:
        raise Refused(f"{warning}; resending it needs the explicit confirmation")
    now = timezone.now()
    with transaction.atomic():
        # Conditional, like the send claim: if a worker or another operator moved the row since the
        # page was drawn, nothing happens and the operator is told.
        moved = Delivery.objects.filter(id=delivery.id, status__in=RESENDABLE_STATUSES).update(
            status=Status.PENDING, settled_at=None, status_reason=f"resend by {by.get_username()}"[:255],
            updated_at=now,
        )
        if not moved:
            current = Delivery.objects.filter(id=delivery.id).values_list("status", flat=True).first()
            raise Refused(f"it is {current} now, already on its way")
        delivery_id, user_id = str(delivery.id), by.pk
        transaction.on_commit(lambda: _enqueue_resend(delivery_id, user_id, reason))
    logger.info("delivery %s resend requested by user %s: %s", delivery.id, by.pk, reason[:200])
    delivery.refresh_from_db()
    return delivery


def _enqueue_resend(delivery_id: str, user_id: int, reason: str) -> None:
    from deliveries.tasks import send_delivery

    try:
        send_delivery.delay(delivery_id, Attempt.Trigger.RESEND, user_id, reason)
    except Exception:  # noqa: BLE001 - kombu raises many types; the row is safe either way
        # The row stays `pending`, like an intake whose broker was down.
        logger.exception("could not enqueue the resend of delivery %s; it stays pending", delivery_id)


def opt_out_clear(*, opt_out: OptOut, by: User, reason: str) -> OptOut:
    """Clear an opt-out (the person texted START, or it was recorded in error). It is kept, with who
    cleared it and why; sends to the pair are no longer suppressed."""
    reason = reason.strip()
    if not reason:
        raise Refused("a reason is required")
    now = timezone.now()
    cleared = OptOut.objects.filter(id=opt_out.id, cleared_at__isnull=True).update(
        cleared_at=now, cleared_by=by, cleared_reason=reason
    )
    if not cleared:
        raise Refused("it was already cleared")
    logger.info("opt-out %s (%s from %s) cleared by user %s", opt_out.id, opt_out.recipient, opt_out.sender, by.pk)
    opt_out.refresh_from_db()
    return opt_out
