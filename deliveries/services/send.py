"""Sending: claim a pending delivery, POST it to Twilio, record what Twilio said.

Rules kept here: a delivery is claimed under its row lock before its POST, so two workers can never
both send it; no network call inside a transaction; the attempt row exists before the POST, and its
result and the delivery's new status are written together, in one transaction.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from deliveries.models import Attempt, Delivery
from deliveries.observability import logcontext, metrics
from deliveries.services import calls, events, flood, queue
from deliveries.services.attempts import attempt_finish, attempt_open
from deliveries.services.credentials import credential_rejected
from deliveries.services.receipts import opt_out_record
from deliveries.twilio import client as twilio
from deliveries.twilio.errors import BAD_CREDENTIALS_CODE, OPTED_OUT_CODE, Outcome

logger = logging.getLogger(__name__)
Status = Delivery.Status
NO_CREDENTIAL = (
    "No usable Twilio credential for this delivery: its token was erased when the organisation "
    "unsubscribed, or Twilio refused it (20003). The next run call reads the secret again."
)


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
    the operator and their reason, which are kept on its attempt (see desk.delivery_resend)."""
    claimed = claim(delivery_id, trigger, from_status=Status.PENDING, triggered_by_id=triggered_by_id, reason=reason)
    if isinstance(claimed, SendDecision):
        return claimed
    delivery, attempt = claimed
    return record_result(delivery, attempt, post(delivery))


def claim(
    delivery_id: str, trigger: str, *, from_status: str, triggered_by_id: int | None = None, reason: str = ""
) -> tuple[Delivery, Attempt] | SendDecision:
    """Move the delivery from `from_status` to `sending` and open an Attempt, or say why not.

    The delivery's and its organisation's rows are locked together: that serialises the limits'
    counts for one organisation across every worker, while the POST itself happens after commit. A row
    this statement waited for is read as the holder left it, so a claim that waited sees the delivery
    another claim just took. NO KEY: it excludes every other claim, but not the foreign-key checks of
    rows that refer to these (an intake's new deliveries of the organisation, a status event). SQLite
    has no row locks: its write transactions (BEGIN IMMEDIATE) already run one at a time. The
    credential is read after the locks, when first used, so a token erased meanwhile is never used."""
    now = timezone.now()
    with transaction.atomic():
        delivery = delivery_locked(delivery_id)
        if delivery is None:
            return SendDecision(status="missing")
        logcontext.bind(oid=delivery.organization.oid, idempotency_key=delivery.idempotency_key)  # for log lines
        if delivery.status != from_status:
            return _not_now(delivery, from_status)
        if delivery.resend_by_id and trigger != Attempt.Trigger.RECONCILE:
            # An operator's resend, whichever task carries it (its own, or the sweeper's).
            trigger, triggered_by_id, reason = Attempt.Trigger.RESEND, delivery.resend_by_id, delivery.resend_reason
        if trigger != Attempt.Trigger.RECONCILE:
            held = _held_back(delivery, trigger, now)
            if held:
                return held
        attempt = attempt_open(
            delivery=delivery, trigger=trigger, now=now, triggered_by_id=triggered_by_id, reason=reason
        )
    return delivery, attempt


def delivery_locked(delivery_id: str) -> Delivery | None:
    """The delivery with its organisation, both rows locked (claim says why), in a transaction."""
    # get(), not first(): ordering by the model's default adds nothing to a read by primary key, and
    # compiling an ORDER BY against 50 selected columns costs more than the query itself.
    try:
        return (
            Delivery.objects.select_related("organization")
            .select_for_update(no_key=True, of=("self", "organization"))
            .get(id=delivery_id)
        )
    except Delivery.DoesNotExist:
        return None


def _not_now(delivery: Delivery, from_status: str) -> SendDecision:
    # Claimed by another worker, or a redelivered task for a finished delivery.
    logger.info("delivery %s is %s, not %s; nothing to do", delivery.id, delivery.status, from_status)
    return SendDecision(status=delivery.status)


def _held_back(delivery: Delivery, trigger: str, now: datetime) -> SendDecision | None:
    """Calls that must never ring, the limits and opt-outs (flood.hold_for), decided under the
    organisation's lock."""
    hold, why = calls.call_hold(delivery)  # a call that must never ring: recorded, not placed
    decision = flood.Decision(hold, why) if hold else flood.hold_for(delivery, trigger, now)
    if decision.hold:
        Delivery.objects.filter(id=delivery.id).update(
            status=Status.SUPPRESSED,
            hold=decision.hold,
            status_reason=decision.reason,
            settled_at=now,
            due_at=None,
            updated_at=now,
        )
        metrics.held_back(decision.hold)
        logger.info("delivery %s held back: %s", delivery.id, decision.reason)
        if delivery.channel == Delivery.Channel.VOICE:  # the escalation's call will not ring
            events.alert_unacknowledged(delivery=delivery)
        return SendDecision(status=Status.SUPPRESSED)
    if decision.busy:
        # Stays pending; the task comes back shortly (the sweeper would too, past due_at).
        return SendDecision(status=Status.PENDING, retry_in=random.uniform(0.5, 1.5))
    return None


def post(delivery: Delivery) -> twilio.SendResult:
    credential = delivery.credential
    if credential is None or not credential.usable:
        return twilio.SendResult(outcome=Outcome.PERMANENT, duration_ms=0, twilio_message=NO_CREDENTIAL)
    if delivery.channel == Delivery.Channel.VOICE:  # an escalation's call
        result = calls.call_post(delivery)
        metrics.twilio_call(result.outcome.value, result.duration_ms)
        return result
    result = twilio.send_sms(
        account_sid=credential.account_sid,
        auth_token=credential.auth_token,
        to=delivery.to_number,
        from_=delivery.from_number,
        body=delivery.text_sent,  # with the acknowledgement instruction
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
    return settings.PUBLIC_BASE_URL + reverse("twilio-status-callback", args=[delivery.id])


def record_result(delivery: Delivery, attempt: Attempt, result: twilio.SendResult) -> SendDecision:
    now = timezone.now()
    decision, fields = _decide(delivery, result, now)
    with transaction.atomic():
        attempt_finish(
            attempt=attempt,
            now=now,
            outcome=result.outcome.value,
            delivery=fields,
            http_status=result.http_status,
            twilio_code=result.twilio_code,
            twilio_message=result.twilio_message,
            twilio_request_id=result.twilio_request_id,
            duration_ms=result.duration_ms,
        )
        if decision.status == Status.FAILED:  # for LimaCharlie, with the failure it records
            events.delivery_settled(Delivery.objects.get(id=delivery.id))
        if result.twilio_code == OPTED_OUT_CODE:
            opt_out_record(delivery=delivery)
        if result.twilio_code == BAD_CREDENTIALS_CODE and delivery.credential_id:
            credential_rejected(credential_id=delivery.credential_id)
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
    return decision


def _decide(delivery: Delivery, result: twilio.SendResult, now: datetime) -> tuple[SendDecision, dict[str, Any]]:
    """The send policy: what an outcome makes of the delivery, and what the task does next."""
    fields: dict[str, Any] = {"error_code": result.twilio_code, "error_message": result.twilio_message}
    if result.outcome == Outcome.ACCEPTED:
        fields.update(status=result.status, twilio_sid=result.sid, sent_at=now, error_code=None, error_message="")
        return SendDecision(status=result.status), fields
    if result.outcome == Outcome.NOT_PROCESSED and may_retry(delivery, now):
        retry_in = retry_delay(delivery.attempt_count)
        fields.update(status=Status.PENDING, due_at=now + timedelta(seconds=retry_in))
        return SendDecision(status=Status.PENDING, retry_in=retry_in), fields
    if result.outcome == Outcome.AMBIGUOUS:
        # The message may exist. Re-POSTing could text the on-call engineer twice, so we first
        # look for it at Twilio (reconcile) after a grace period.
        grace = settings.RECONCILE_GRACE_SECONDS
        fields.update(status=Status.AMBIGUOUS, due_at=now + timedelta(seconds=grace))
        return SendDecision(status=Status.AMBIGUOUS, reconcile_in=grace), fields
    message = result.twilio_message
    if result.outcome == Outcome.NOT_PROCESSED:
        message = f"Gave up after {delivery.attempt_count} attempts: {message}"
    fields.update(status=Status.FAILED, settled_at=now, error_message=message[:1000])
    return SendDecision(status=Status.FAILED), fields


def may_retry(delivery: Delivery, now: datetime) -> bool:
    deadline = delivery.created_at + timedelta(seconds=settings.SEND_DEADLINE_SECONDS)
    return delivery.attempt_count < settings.SEND_MAX_ATTEMPTS and now < deadline


def retry_delay(attempts_made: int) -> float:
    """Exponential backoff with ±20 % jitter: base, 2×base, 4×base… capped. Jitter keeps a burst
    that hit Twilio's concurrency cap from coming back all at the same instant."""
    base = min(settings.SEND_RETRY_MAX_SECONDS, settings.SEND_RETRY_BASE_SECONDS * 2 ** max(0, attempts_made - 1))
    return base * random.uniform(0.8, 1.2)


def follow_up(*, delivery_id: str, decision: SendDecision) -> str:
    """Schedule what a send or reconcile decided: a retry, or a look at Twilio. The row is already
    committed with its `due_at`, so a broker failure here only delays it to the next sweep."""
    if decision.retry_in is not None:
        metrics.retry_scheduled()
        queue.send([delivery_id], trigger=Attempt.Trigger.RETRY, countdown=decision.retry_in)
    if decision.reconcile_in is not None:
        queue.reconcile([delivery_id], countdown=decision.reconcile_in)
    return decision.status
