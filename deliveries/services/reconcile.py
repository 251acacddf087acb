"""Ambiguous outcomes: look for the message at Twilio, then decide. Twilio has no idempotency key,
so after an answer that may or may not have created a message we never re-POST blindly: we look.
Found: adopt its SID and status. Not found: send again once (AMBIGUOUS_POLICY=at-least-once) or fail
(at-most-once). Each look is an attempt with trigger `reconcile`."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deliveries.models import Attempt, Delivery
from deliveries.observability import metrics
from deliveries.services import calls, events
from deliveries.services.attempts import attempt_finish, attempt_open
from deliveries.services.send import SendDecision, claim, may_retry, post, record_result, retry_delay
from deliveries.twilio import client as twilio

logger = logging.getLogger(__name__)
Status = Delivery.Status
Found = twilio.LookupOutcome

_OUTCOMES = {
    Found.FOUND: Attempt.Outcome.FOUND_ON_RECONCILE,
    Found.NOT_FOUND: Attempt.Outcome.NOT_FOUND_ON_RECONCILE,
    Found.FAILED: Attempt.Outcome.RECONCILE_FAILED,
}


def delivery_reconcile(*, delivery_id: str) -> SendDecision:
    claimed = claim(delivery_id, Attempt.Trigger.RECONCILE, from_status=Status.AMBIGUOUS)
    if isinstance(claimed, SendDecision):
        return claimed
    delivery, attempt = claimed
    lookup = _look_up(delivery)
    outcome = _OUTCOMES[lookup.outcome]
    metrics.attempt_finished(outcome)
    now = timezone.now()
    with transaction.atomic():
        decision, fields = _decide(delivery, lookup, now)
        attempt_finish(
            attempt=attempt,
            now=now,
            outcome=outcome,
            delivery=fields,
            http_status=lookup.http_status,
            twilio_code=lookup.twilio_code,
            twilio_message=lookup.twilio_message or (f"found {lookup.sid}" if lookup.sid else ""),
            twilio_request_id=lookup.twilio_request_id,
            duration_ms=lookup.duration_ms,
        )
        if decision is not None and decision.status == Status.FAILED:  # for LimaCharlie: failed, unacknowledged
            events.delivery_settled(Delivery.objects.get(id=delivery.id))
        if decision is not None:
            return decision
        # at-least-once: not found means it was never created, so one more POST cannot double it.
        retry = attempt_open(delivery=delivery, trigger=Attempt.Trigger.RETRY, now=now)
    logger.info("delivery %s not found at Twilio after an ambiguous answer; sending it again", delivery.id)
    return record_result(delivery, retry, post(delivery))


def _look_up(delivery: Delivery) -> twilio.LookupResult:
    credential = delivery.credential
    if credential is None or not credential.usable:
        return twilio.LookupResult(Found.FAILED, 0, twilio_message="No usable Twilio credential to look with.")
    since = (
        delivery.attempts.filter(outcome=Attempt.Outcome.AMBIGUOUS)
        .order_by("-number")
        .values_list("started_at", flat=True)
        .first()
        or delivery.created_at
    )
    if delivery.channel == Delivery.Channel.VOICE:
        return calls.call_find(delivery, since)
    return twilio.find_message(
        account_sid=credential.account_sid,
        auth_token=credential.auth_token,
        to=delivery.to_number,
        from_=delivery.from_number,
        body=delivery.text_sent,
        since=since,
    )


def _decide(
    delivery: Delivery, lookup: twilio.LookupResult, now: datetime
) -> tuple[SendDecision | None, dict[str, object]]:
    """What the look-up makes of the delivery. No decision means: send it again now."""
    if lookup.outcome == Found.FOUND:
        logger.info("delivery %s found at Twilio on reconcile: %s", delivery.id, lookup.sid)
        return SendDecision(status=Status.QUEUED), {
            "status": lookup.status,
            "twilio_sid": lookup.sid,
            "sent_at": now,
            "error_code": None,
            "error_message": "",
        }
    if lookup.outcome == Found.FAILED:
        # This look-up's attempt is not finished yet: it counts as one more.
        failed_lookups = delivery.attempts.filter(outcome=Attempt.Outcome.RECONCILE_FAILED).count() + 1
        if failed_lookups >= settings.SEND_MAX_ATTEMPTS:
            # Nothing is due any more: the sweeper leaves it alone, and the desk shows it as ambiguous.
            logger.warning("delivery %s: gave up reconciling; an operator must decide", delivery.id)
            return SendDecision(status=Status.AMBIGUOUS), {"status": Status.AMBIGUOUS, "due_at": None}
        delay = retry_delay(failed_lookups)
        return SendDecision(status=Status.AMBIGUOUS, reconcile_in=delay), {
            "status": Status.AMBIGUOUS,
            "due_at": now + timedelta(seconds=delay),
        }
    voice = delivery.channel == Delivery.Channel.VOICE
    if settings.AMBIGUOUS_POLICY == "at-most-once" or voice or not may_retry(delivery, now):
        why = (
            "not re-sent (AMBIGUOUS_POLICY=at-most-once)"
            if settings.AMBIGUOUS_POLICY == "at-most-once"
            # An escalation step is one call: never a second one after an ambiguous answer.
            else "a call is never placed twice for one escalation step"
            if voice
            else f"gave up after {delivery.attempt_count} attempts to send it"
        )
        return SendDecision(status=Status.FAILED), {
            "status": Status.FAILED,
            "settled_at": now,
            "error_message": f"Twilio's answer was ambiguous and the message was not found at Twilio; {why}.",
        }
    return None, {}
