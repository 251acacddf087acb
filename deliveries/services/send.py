"""Sending: claim a pending delivery, POST it to Twilio, record what Twilio said.

Rules kept here: a delivery is claimed with a conditional update before its POST, so two workers
can never both send it; no network call inside a transaction; the attempt row exists before the
POST, and its result and the delivery's new status are written together (one statement or one transaction).
"""

from __future__ import annotations

import logging
import random
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from deliveries.models import Attempt, Delivery
from deliveries.observability import logcontext, metrics
from deliveries.services import attempts, calls, flood, queue, sql
from deliveries.services.attempts import attempt_finish, attempt_open
from deliveries.services.credentials import credential_rejected
from deliveries.services.receipts import opt_out_record
from deliveries.twilio import client as twilio
from deliveries.twilio.errors import BAD_CREDENTIALS_CODE, OPTED_OUT_CODE, Outcome

logger = logging.getLogger(__name__)
Status = Delivery.Status


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

    The organisation's row is locked first, with the delivery's: that serialises the flood-control and
    concurrency decisions for one organisation across every worker, while the POST itself happens after
    commit. The credential is read after every lock, with flood control's counts (or alone, to reconcile).
    On PostgreSQL a send or a retry is first tried in one round trip (_claim_at_once)."""
    now = timezone.now()
    if trigger in _AT_ONCE and from_status == Status.PENDING and connection.vendor == "postgresql":
        claimed = _claim_at_once(delivery_id, trigger, now)
        if claimed is not None:
            return claimed
    with transaction.atomic():
        delivery = sql.delivery_for_claim(delivery_id)
        if delivery is None:
            return SendDecision(status="missing")
        logcontext.bind(oid=delivery.organization.oid, idempotency_key=delivery.idempotency_key)  # for log lines
        if delivery.status != from_status:
            return _not_now(delivery, from_status)
        if delivery.resend_by_id and trigger != Attempt.Trigger.RECONCILE:
            # An operator's resend, whichever task carries it (its own, or the sweeper's).
            trigger, triggered_by_id, reason = Attempt.Trigger.RESEND, delivery.resend_by_id, delivery.resend_reason
        if trigger != Attempt.Trigger.RECONCILE:
            held = _held_back(delivery, trigger, now)  # reads the credential too
            if held:
                return held
        else:
            sql.credential_read(delivery)
        attempt = attempt_open(
            delivery=delivery, trigger=trigger, now=now, triggered_by_id=triggered_by_id, reason=reason
        )
    return delivery, attempt


_AT_ONCE = (Attempt.Trigger.AUTOMATIC, Attempt.Trigger.RETRY)


def _claim_at_once(delivery_id: str, trigger: str, now: datetime) -> tuple[Delivery, Attempt] | SendDecision | None:
    """The claim of a send or a retry in one round trip (sql.at_once): the same locks, then one statement
    that reads the counts and the credential and claims the delivery if flood control sends it now
    (flood.sends_at_once, the SQL twin of flood.decide). `None` where the usual claim must decide (a
    hold to write, an operator's resend waiting, a summary): it locks and reads again."""
    capped = bool(settings.TWILIO_MAX_CONCURRENT_PER_ACCOUNT)
    sends, sends_params = flood.sends_at_once(capped=capped)
    # A call is decided by the usual claim, where calls.call_hold may hold it back: never at once.
    condition = (f"{sends} AND channel = %s", [*sends_params, Delivery.Channel.SMS])
    deciding, deciding_params = attempts.opening_clauses(delivery_id, trigger, now, condition)
    reading, _ = sql.credential_joined(
        "(SELECT counts.*, (SELECT id FROM opened) AS attempt_id FROM counts) k", "(SELECT credential_id FROM me)", []
    )
    credential_of = f"(SELECT credential_id FROM {sql.DELIVERY} WHERE id = %s)"
    locked, *_, counted = sql.at_once(
        sql.delivery_locking(delivery_id),
        *([(flood.account_lock(credential_of), [sql.key(delivery_id)])] if capped else []),
        (
            f"WITH {flood.counts_clauses(capped=capped, held=True)}, {deciding} {reading}",
            [*flood.counts_params(delivery_id, now), *deciding_params],
        ),
    )
    if not locked:
        return SendDecision(status="missing")
    delivery = sql.delivery_read(locked[0])
    logcontext.bind(oid=delivery.organization.oid, idempotency_key=delivery.idempotency_key)  # for log lines
    *counts, attempt_id = sql.credential_set(delivery, counted[0])
    if attempt_id is not None:
        return delivery, attempts.attempt_opened(delivery, attempt_id, trigger, now, None, "")
    if delivery.status != Status.PENDING:
        return _not_now(delivery, Status.PENDING)
    hold, _, busy = flood.decide(delivery, trigger, flood.Counts.of(counts), capped=capped)
    if busy and not hold and not delivery.resend_by_id:
        return _account_busy()
    return None


def _not_now(delivery: Delivery, from_status: str) -> SendDecision:
    # Claimed by another worker, or a redelivered task for a finished delivery.
    logger.info("delivery %s is %s, not %s; nothing to do", delivery.id, delivery.status, from_status)
    return SendDecision(status=delivery.status)


def _account_busy() -> SendDecision:
    # Stays pending; the task comes back shortly (the sweeper would too, past due_at).
    return SendDecision(status=Status.PENDING, retry_in=random.uniform(0.5, 1.5))


def _held_back(delivery: Delivery, trigger: str, now: datetime) -> SendDecision | None:
    """Flood control, opt-outs and the per-account cap, decided under the organisation's lock."""
    hold, why = calls.call_hold(delivery)  # a call that must never ring: recorded, not placed
    account_busy = False
    if not hold:
        hold, why, account_busy = flood.hold_for(delivery, trigger, now)
    if hold:
        Delivery.objects.filter(id=delivery.id).update(
            status=Status.SUPPRESSED, hold=hold, status_reason=why, settled_at=now, due_at=None, updated_at=now
        )
        logger.info("delivery %s held back: %s", delivery.id, why)
        return SendDecision(status=Status.SUPPRESSED)
    if account_busy:
        return _account_busy()
    return None


def post(delivery: Delivery) -> twilio.SendResult:
    credential = delivery.credential
    if credential is None or not credential.usable:
        return twilio.SendResult(
            outcome=Outcome.PERMANENT,
            duration_ms=0,
            twilio_message="No Twilio credential is stored for this delivery (its organisation unsubscribed).",
        )
    if delivery.channel == Delivery.Channel.VOICE:  # issue 11: an escalation's call
        result = calls.call_post(delivery)
        metrics.twilio_call(result.outcome.value, result.duration_ms)
        return result
    result = twilio.send_sms(
        account_sid=credential.account_sid,
        auth_token=credential.auth_token,
        to=delivery.to_number,
        from_=delivery.from_number,
        body=delivery.text_sent,  # issue 11: with the acknowledgement instruction
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
    # attempt_finish is atomic by itself: one statement on PostgreSQL. A transaction around it only where
    # an opt-out or a refused credential is written with it, since BEGIN and COMMIT are two more round
    # trips (sql.together says what they cost).
    side_effect = result.twilio_code in (OPTED_OUT_CODE, BAD_CREDENTIALS_CODE)
    with transaction.atomic() if side_effect else nullcontext():
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
        message = f"Gave up after {posts_made(delivery)} attempts: {message}"
    fields.update(status=Status.FAILED, settled_at=now, error_message=message[:1000])
    return SendDecision(status=Status.FAILED), fields


def may_retry(delivery: Delivery, now: datetime) -> bool:
    deadline = delivery.created_at + timedelta(seconds=settings.SEND_DEADLINE_SECONDS)
    return posts_made(delivery) < settings.SEND_MAX_ATTEMPTS and now < deadline


def posts_made(delivery: Delivery) -> int:
    """Tries to send; looking a message up (reconcile) is not one."""
    return delivery.attempts.exclude(trigger=Attempt.Trigger.RECONCILE).count()


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
