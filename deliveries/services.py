"""Every write to the delivery domain. Views, tasks, admin and commands call these and nothing else.

Rules kept here: persist first, then act; no network call inside a transaction; a delivery is
claimed with a conditional UPDATE before its POST, so two workers can never both send it.
"""

from __future__ import annotations

import enum
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Sequence

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from config import logcontext
from deliveries import flood, gateway, metrics
from deliveries.gateway import Outcome
from deliveries.models import AlertRequest, Attempt, Delivery, ErrorReport, Organization, OptOut, StatusEvent
from deliveries.sms import PreparedBody, prepare_body

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

    for n, delivery_id in enumerate(delivery_ids):
        try:
            send_delivery.delay(delivery_id, trigger)
        except Exception:  # noqa: BLE001 - kombu raises many types; the row is safe either way
            # Stop at the first failure: each further try could wait out a connect timeout while
            # LimaCharlie waits for our answer, and the sweeper enqueues these rows anyway.
            logger.exception("could not enqueue delivery %s (and %d more); they stay pending", delivery_id,
                             len(delivery_ids) - n - 1)
            return


# --- sending -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendDecision:
    """What the task should do next: nothing, send again after `retry_in` seconds, or look for the
    message at Twilio after `reconcile_in` seconds."""

    status: str
    retry_in: float | None = None
    reconcile_in: float | None = None


def delivery_send(
    *,
    delivery_id: str,
    trigger: str = Attempt.Trigger.AUTOMATIC,
    triggered_by_id: int | None = None,
    reason: str = "",
) -> SendDecision:
    """Claim a pending delivery, make one attempt, and record what Twilio said. A resend passes
    the operator and their reason, which are kept on its attempt (see delivery_resend)."""
    claimed = _claim(delivery_id, trigger, from_status=Status.PENDING, triggered_by_id=triggered_by_id, reason=reason)
    if isinstance(claimed, SendDecision):
        return claimed
    delivery, attempt = claimed
    return _record_result(delivery, attempt, _post(delivery))


def _claim(
    delivery_id: str, trigger: str, *, from_status: str, triggered_by_id: int | None = None, reason: str = ""
) -> tuple[Delivery, Attempt] | SendDecision:
    """Move the delivery from `from_status` to `sending` and open an Attempt, or say why not.

    The organisation's row is locked first: that serialises the flood-control and concurrency
    decisions for one organisation across every worker, while the POST itself happens after commit."""
    now = timezone.now()
    with transaction.atomic():
        # Lock the organisation (found through the delivery, in one query), then the delivery.
        if not Organization.objects.select_for_update(of=("self",)).filter(deliveries__id=delivery_id).exists():
            return SendDecision(status="missing")
        delivery = Delivery.objects.select_for_update().select_related("organization").get(id=delivery_id)
        logcontext.bind(oid=delivery.organization.oid, idempotency_key=delivery.idempotency_key)  # for log lines
        if delivery.status != from_status:
            # Claimed by another worker, or a redelivered task for a finished delivery.
            logger.info("delivery %s is %s, not %s; nothing to do", delivery_id, delivery.status, from_status)
            return SendDecision(status=delivery.status)
        if trigger != Attempt.Trigger.RECONCILE:
            hold, why = flood.hold_for(delivery, trigger, now)
            if hold:
                Delivery.objects.filter(id=delivery.id).update(
                    status=Status.SUPPRESSED, hold=hold, status_reason=why, settled_at=now, updated_at=now
                )
                logger.info("delivery %s held back: %s", delivery.id, why)
                return SendDecision(status=Status.SUPPRESSED)
            if flood.account_busy(delivery):
                return SendDecision(status=delivery.status, retry_in=random.uniform(0.5, 1.5))
        delivery.status, delivery.claimed_at, delivery.updated_at = Status.SENDING, now, now
        delivery.attempt_count += 1
        # last_trigger / last_outcome mirror the latest attempt for the admin's filters (see the model).
        delivery.last_trigger, delivery.last_outcome = trigger, ""
        delivery.save(update_fields=["status", "claimed_at", "updated_at", "attempt_count", "last_trigger", "last_outcome"])
        attempt = Attempt.objects.create(delivery=delivery, number=delivery.attempt_count, trigger=trigger,
                                         started_at=now, triggered_by_id=triggered_by_id, reason=reason)
    return delivery, attempt


def _post(delivery: Delivery) -> gateway.SendResult:
    org = delivery.organization
    if not org.has_credential:
        return gateway.SendResult(
            outcome=Outcome.PERMANENT,
            duration_ms=0,
            twilio_message="No Twilio credential is stored for this organisation (it unsubscribed).",
        )
    result = gateway.send_sms(
        account_sid=org.twilio_account_sid,
        auth_token=org.twilio_auth_token,
        to=delivery.to_number,
        from_=delivery.from_number,
        body=delivery.body,
        validity_period=settings.TWILIO_VALIDITY_PERIOD,
        status_callback=status_callback_url(delivery),
    )
    metrics.twilio_call(result.outcome.value, result.duration_ms)
    return result


def status_callback_url(delivery: Delivery) -> str:
    """Our own delivery id is in the URL, so a callback finds its row even if the worker died
    before it could save the SID."""
    if not settings.PUBLIC_BASE_URL:
        return ""
    return f"{settings.PUBLIC_BASE_URL}/twilio/status/{delivery.id}/"


def _record_result(delivery: Delivery, attempt: Attempt, result: gateway.SendResult) -> SendDecision:
    now = timezone.now()
    decision = SendDecision(status=Status.FAILED)
    fields: dict[str, Any] = {"updated_at": now, "error_code": result.twilio_code, "error_message": result.twilio_message,
                              "last_outcome": result.outcome.value}
    if result.outcome == Outcome.ACCEPTED:
        status = Status.ACCEPTED if result.twilio_status == "accepted" else Status.QUEUED
        fields.update(status=status, twilio_sid=result.sid, sent_at=now, error_code=None, error_message="")
        decision = SendDecision(status=status)
    elif result.outcome == Outcome.NOT_PROCESSED and _may_retry(delivery, now):
        fields.update(status=Status.PENDING)
        decision = SendDecision(status=Status.PENDING, retry_in=retry_delay(delivery.attempt_count))
    elif result.outcome == Outcome.AMBIGUOUS:
        # The message may exist. Re-POSTing could text the on-call engineer twice, so we first
        # look for it at Twilio (delivery_reconcile) after a grace period.
        fields.update(status=Status.AMBIGUOUS)
        decision = SendDecision(status=Status.AMBIGUOUS, reconcile_in=settings.RECONCILE_GRACE_SECONDS)
    else:
        message = result.twilio_message
        if result.outcome == Outcome.NOT_PROCESSED:
            message = f"Gave up after {_posts_made(delivery)} attempts: {message}"
        fields.update(status=Status.FAILED, settled_at=now, error_message=message[:1000])
    with transaction.atomic():
        _finish_attempt(attempt, now, outcome=result.outcome.value, http_status=result.http_status,
                        twilio_code=result.twilio_code, twilio_message=result.twilio_message,
                        twilio_request_id=result.twilio_request_id, duration_ms=result.duration_ms)
        # Only the claim we hold may be resolved: if a status callback moved the row meanwhile, it wins.
        Delivery.objects.filter(id=delivery.id, status=Status.SENDING).update(**fields)
        if result.twilio_code == gateway.OPTED_OUT_CODE:
            opt_out_record(delivery=delivery)
    metrics.attempt_finished(result.outcome.value)
    logger.info(
        "delivery %s attempt %d: %s (http %s, code %s, %s)",
        delivery.id, attempt.number, result.outcome.value, result.http_status, result.twilio_code,
        result.twilio_message or "-",
    )
    return decision


def _finish_attempt(attempt: Attempt, now: Any, **fields: Any) -> None:
    # `finished_at IS NULL` makes finishing a once-only operation: an attempt is never rewritten.
    Attempt.objects.filter(id=attempt.id, finished_at__isnull=True).update(finished_at=now, **fields)


def _may_retry(delivery: Delivery, now: Any) -> bool:
    deadline = delivery.created_at + timedelta(seconds=settings.SEND_DEADLINE_SECONDS)
    return _posts_made(delivery) < settings.SEND_MAX_ATTEMPTS and now < deadline


def _posts_made(delivery: Delivery) -> int:
    """Tries to send; looking a message up (reconcile) is not one."""
    return delivery.attempts.exclude(trigger=Attempt.Trigger.RECONCILE).count()


def retry_delay(attempts_made: int) -> float:
    """Exponential backoff with ±20 % jitter: base, 2×base, 4×base… capped. Jitter keeps a burst
    that hit Twilio's concurrency cap from coming back all at the same instant."""
    base = min(settings.SEND_RETRY_MAX_SECONDS, settings.SEND_RETRY_BASE_SECONDS * 2 ** max(0, attempts_made - 1))
    return base * random.uniform(0.8, 1.2)


# --- ambiguous outcomes: reconcile, then decide ------------------------------------------------------


def delivery_reconcile(*, delivery_id: str) -> SendDecision:
    """Look for an ambiguously-sent message at Twilio. Found: adopt its SID and status. Not found:
    send again once (AMBIGUOUS_POLICY=at-least-once) or fail (at-most-once). Each step is an attempt."""
    claimed = _claim(delivery_id, Attempt.Trigger.RECONCILE, from_status=Status.AMBIGUOUS)
    if isinstance(claimed, SendDecision):
        return claimed
    delivery, attempt = claimed
    org = delivery.organization
    since = (
        delivery.attempts.filter(outcome=Attempt.Outcome.AMBIGUOUS).order_by("-number").values_list("started_at", flat=True).first()
        or delivery.created_at
    )
    if not org.has_credential:
        lookup = gateway.LookupResult(gateway.LookupOutcome.FAILED, 0, twilio_message="No Twilio credential is stored.")
    else:
        lookup = gateway.find_message(
            account_sid=org.twilio_account_sid, auth_token=org.twilio_auth_token, to=delivery.to_number,
            from_=delivery.from_number, body=delivery.body, since=since,
        )
    now = timezone.now()
    outcome = {
        gateway.LookupOutcome.FOUND: Attempt.Outcome.FOUND_ON_RECONCILE,
        gateway.LookupOutcome.NOT_FOUND: Attempt.Outcome.NOT_FOUND_ON_RECONCILE,
        gateway.LookupOutcome.FAILED: Attempt.Outcome.RECONCILE_FAILED,
    }[lookup.outcome]
    metrics.attempt_finished(outcome)
    with transaction.atomic():
        _finish_attempt(attempt, now, outcome=outcome, http_status=lookup.http_status, twilio_code=lookup.twilio_code,
                        twilio_message=lookup.twilio_message or (f"found {lookup.sid}" if lookup.sid else ""),
                        twilio_request_id=lookup.twilio_request_id, duration_ms=lookup.duration_ms)
        mine = Delivery.objects.filter(id=delivery.id, status=Status.SENDING)
        if lookup.outcome == gateway.LookupOutcome.FOUND:
            mine.update(status=_adopted_status(lookup.twilio_status), twilio_sid=lookup.sid, sent_at=now,
                        error_code=None, error_message="", updated_at=now, last_outcome=outcome)
            logger.info("delivery %s found at Twilio on reconcile: %s", delivery.id, lookup.sid)
            return SendDecision(status=Status.QUEUED)
        if lookup.outcome == gateway.LookupOutcome.FAILED:
            failed_lookups = delivery.attempts.filter(outcome=Attempt.Outcome.RECONCILE_FAILED).count()
            mine.update(status=Status.AMBIGUOUS, updated_at=now, last_outcome=outcome)
            if failed_lookups >= settings.SEND_MAX_ATTEMPTS:
                logger.warning("delivery %s: gave up reconciling; an operator must decide", delivery.id)
                return SendDecision(status=Status.AMBIGUOUS)
            return SendDecision(status=Status.AMBIGUOUS, reconcile_in=retry_delay(failed_lookups))
        if settings.AMBIGUOUS_POLICY == "at-most-once" or not _may_retry(delivery, now):
            why = ("not re-sent (AMBIGUOUS_POLICY=at-most-once)" if settings.AMBIGUOUS_POLICY == "at-most-once"
                   else f"gave up after {_posts_made(delivery)} attempts to send it")
            mine.update(status=Status.FAILED, settled_at=now, updated_at=now, last_outcome=outcome,
                        error_message=f"Twilio's answer was ambiguous and the message was not found at Twilio; {why}.")
            return SendDecision(status=Status.FAILED)
        # at-least-once: not found means it was never created, so one more POST cannot double it.
        delivery.attempt_count += 1
        mine.update(attempt_count=delivery.attempt_count, claimed_at=now, updated_at=now,
                    last_trigger=Attempt.Trigger.RETRY, last_outcome="")
        attempt = Attempt.objects.create(delivery=delivery, number=delivery.attempt_count,
                                         trigger=Attempt.Trigger.RETRY, started_at=now)
    logger.info("delivery %s not found at Twilio after an ambiguous answer; sending it again", delivery.id)
    return _record_result(delivery, attempt, _post(delivery))


def _adopted_status(twilio_status: str) -> str:
    return _CALLBACK_STATUS.get(twilio_status, Status.QUEUED)


# --- delivery receipts ---------------------------------------------------------------------------

_CALLBACK_STATUS = {
    "queued": Status.QUEUED, "sending": Status.QUEUED, "accepted": Status.ACCEPTED, "scheduled": Status.ACCEPTED,
    "sent": Status.SENT, "delivered": Status.DELIVERED, "read": Status.DELIVERED,
    "undelivered": Status.UNDELIVERED, "failed": Status.FAILED, "canceled": Status.FAILED,
}
# Our statuses on Twilio's scale (gateway.STATUS_RANK); ours before Twilio has the message rank 0.
_RANK: dict[str, int] = {Status.QUEUED: 1, Status.ACCEPTED: 1, Status.SENT: 3, Status.DELIVERED: 4, Status.UNDELIVERED: 4,
         Status.FAILED: 4, Status.SUPPRESSED: 4}


class CallbackResult(enum.StrEnum):
    STORED = "stored"
    UNKNOWN = "unknown"  # no such delivery, or nothing to check the signature with
    FORGED = "forged"


def status_callback_record(*, delivery_id: str, url: str, params: dict[str, str], signature: str) -> CallbackResult:
    """Store a Twilio status callback and move the delivery's status forward (never backward:
    callbacks arrive out of order and more than once, and a final status is final)."""
    delivery = Delivery.objects.select_related("organization").filter(id=delivery_id).first()
    if delivery is None or not delivery.organization.has_credential:
        logger.warning("status callback for unknown delivery %s (or no credential to check it)", delivery_id)
        return CallbackResult.UNKNOWN
    if not gateway.signature_valid(auth_token=delivery.organization.twilio_auth_token, url=url, params=params,
                                   signature=signature):
        logger.warning("status callback for delivery %s with an invalid X-Twilio-Signature", delivery_id)
        return CallbackResult.FORGED
    twilio_status = params.get("MessageStatus") or params.get("SmsStatus") or ""
    code = _int_or_none(params.get("ErrorCode"))
    now = timezone.now()
    with transaction.atomic():
        StatusEvent.objects.create(delivery=delivery, message_sid=params.get("MessageSid", "")[:34],
                                   message_status=twilio_status[:32], error_code=code, payload=params)
        delivery = Delivery.objects.select_for_update().get(id=delivery.id)
        new_status = _CALLBACK_STATUS.get(twilio_status)
        if new_status is None or gateway.STATUS_RANK.get(twilio_status, 0) <= _RANK.get(delivery.status, 0):
            return CallbackResult.STORED  # older news, or a status we do not track: kept as an event only
        delivery.status, delivery.updated_at = new_status, now
        # The callback proves the message exists: adopt its SID even if the worker died before saving it.
        delivery.twilio_sid = delivery.twilio_sid or params.get("MessageSid", "")[:34]
        delivery.sent_at = delivery.sent_at or now
        if code is not None:
            delivery.error_code = code
            delivery.error_message = gateway.ERROR_MEANINGS.get(code, f"Twilio error {code}")
        if gateway.STATUS_RANK[twilio_status] == 4:
            delivery.settled_at = now
        delivery.save()
        if code == gateway.OPTED_OUT_CODE:
            opt_out_record(delivery=delivery)
    return CallbackResult.STORED


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


# --- opt-outs ----------------------------------------------------------------------------------------


def opt_out_record(*, delivery: Delivery) -> OptOut:
    """Twilio said 21610: this recipient texted STOP to this sender. Later texts to the pair are held
    back as `suppressed` without calling Twilio, until an operator clears the opt-out."""
    opt_out, created = OptOut.objects.get_or_create(
        organization_id=delivery.organization_id, sender=delivery.from_number, recipient=delivery.to_number,
        cleared_at__isnull=True, defaults={"source_delivery": delivery},
    )
    if created:
        logger.info("recorded opt-out of %s from sender %s (delivery %s)", delivery.to_number, delivery.from_number, delivery.id)
    return opt_out


# --- the sweeper ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepReport:
    requeued: int = 0
    lost_in_flight: int = 0
    reconciles: int = 0
    summaries: int = 0


def deliveries_sweep() -> SweepReport:
    """Periodic safety net (Celery beat). Re-enqueues deliveries whose task was lost (broker down at
    accept time, a message dropped); turns a claim whose worker died into an ambiguous outcome, which
    goes through reconciliation rather than a blind second POST; and sends flood-control summaries."""
    from deliveries.tasks import reconcile_delivery, send_delivery

    now = timezone.now()
    stuck = now - timedelta(seconds=settings.SWEEP_STUCK_SECONDS)
    # A pending or ambiguous row whose task was lost (or is merely late) is enqueued again: the
    # claim makes a duplicate task harmless, so this threshold can be short.
    waiting = now - timedelta(seconds=settings.SWEEP_PENDING_SECONDS)

    requeued = 0
    for delivery_id in Delivery.objects.filter(status=Status.PENDING, updated_at__lt=waiting).values_list("id", flat=True)[:1000]:
        try:
            send_delivery.delay(str(delivery_id), Attempt.Trigger.AUTOMATIC)
        except Exception:  # noqa: BLE001 - broker still down: the next sweep tries again
            logger.warning("sweeper could not enqueue delivery %s; will try again", delivery_id)
            break
        Delivery.objects.filter(id=delivery_id, status=Status.PENDING).update(updated_at=now)
        requeued += 1

    lost = 0
    for delivery in Delivery.objects.filter(status=Status.SENDING, claimed_at__lt=stuck)[:1000]:
        # The task time limit is far below SWEEP_STUCK_SECONDS, so no live worker still holds this claim.
        with transaction.atomic():
            if Delivery.objects.filter(id=delivery.id, status=Status.SENDING, claimed_at__lt=stuck).update(
                # Back-dated so that the reconcile step below picks it up in this same sweep.
                status=Status.AMBIGUOUS, updated_at=now - timedelta(seconds=settings.SWEEP_PENDING_SECONDS + 1),
                last_outcome=Attempt.Outcome.AMBIGUOUS,
                error_message="The worker stopped during the attempt; the message may exist at Twilio.",
            ):
                for attempt in delivery.attempts.filter(finished_at__isnull=True):
                    _finish_attempt(attempt, now, outcome=Attempt.Outcome.AMBIGUOUS,
                                    twilio_message="worker lost during the attempt")
                lost += 1

    reconciles = 0
    for delivery_id in Delivery.objects.filter(status=Status.AMBIGUOUS, updated_at__lt=waiting).values_list("id", flat=True)[:1000]:
        if Attempt.objects.filter(delivery_id=delivery_id, outcome=Attempt.Outcome.RECONCILE_FAILED).count() >= settings.SEND_MAX_ATTEMPTS:
            continue  # an operator must decide
        try:
            reconcile_delivery.delay(str(delivery_id))
        except Exception:  # noqa: BLE001
            break
        Delivery.objects.filter(id=delivery_id, status=Status.AMBIGUOUS).update(updated_at=now)
        reconciles += 1

    summaries = flood_summaries_send(now=now)
    report = SweepReport(requeued, lost, reconciles, summaries)
    if report != SweepReport():
        logger.info("sweep: %s", report)
    return report


def flood_summaries_send(*, now: Any) -> int:
    """When the window in which alerts to a recipient were held back has closed, send that recipient
    one text saying how many were held back, so silence never hides a storm."""
    closed = now - timedelta(seconds=settings.FLOOD_WINDOW_SECONDS)
    groups = (
        Delivery.objects.filter(status=Status.SUPPRESSED, hold__in=Delivery.FLOOD_HOLDS, summary__isnull=True)
        .values("organization_id", "from_number", "to_number")
        .annotate(first=models.Min("created_at"))
        .filter(first__lte=closed)
    )
    created = []
    for group in groups[:1000]:
        with transaction.atomic():
            held = Delivery.objects.select_for_update().filter(
                status=Status.SUPPRESSED, hold__in=Delivery.FLOOD_HOLDS, summary__isnull=True,
                organization_id=group["organization_id"], from_number=group["from_number"], to_number=group["to_number"],
            )
            ids = list(held.values_list("id", flat=True))
            if not ids:
                continue
            prepared = prepare_body(
                f"ext-twilio: {len(ids)} further alert{'s were' if len(ids) != 1 else ' was'} held back by flood "
                "control; see the audit desk.", settings.SMS_MAX_BODY_CHARS,
            )
            summary = Delivery.objects.create(
                organization_id=group["organization_id"], idempotency_key=f"summary:{uuid.uuid4()}",
                ident="ext-twilio flood control", from_number=group["from_number"], to_number=group["to_number"],
                body=prepared.text, original_length=prepared.original_length, truncated=False,
                encoding=prepared.encoding, segments=prepared.segments, kind=Delivery.Kind.SUMMARY,
            )
            Delivery.objects.filter(id__in=ids).update(summary=summary, updated_at=now)
            created.append(str(summary.id))
    if created:
        enqueue_sends(created)
    return len(created)


# --- the audit desk: resend and opt-out clearing ------------------------------------------------

# A resend may start from any status in which no send of ours is in flight. Never from `pending`
# or `sending`: the delivery is already queued or being posted, and a second task would race it.
# Every status but the two in which a send is already on its way.
RESENDABLE_STATUSES = frozenset(Status) - {Status.PENDING, Status.SENDING}


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
