"""The one writer of attempt bookkeeping: an Attempt row opened when a try starts and finished
exactly once, and the delivery's copies of the latest attempt (`attempt_count`, `last_trigger`,
`last_outcome`, kept on Delivery for the desk's indexed filters). Callers hold the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db.models import F

from deliveries.models import Attempt, Delivery

Status = Delivery.Status


def attempt_open(
    *, delivery: Delivery, trigger: str, now: datetime, triggered_by_id: int | None = None, reason: str = ""
) -> Attempt:
    """Claim the (locked) delivery for this try: `sending`, nothing due, and a new attempt."""
    delivery.attempt_count += 1
    delivery.status, delivery.claimed_at, delivery.due_at = Status.SENDING, now, None
    delivery.last_trigger, delivery.last_outcome = trigger, ""
    delivery.resend_by_id, delivery.resend_reason = None, ""  # a waiting resend is this attempt now
    Delivery.objects.filter(id=delivery.id).update(
        status=Status.SENDING,
        claimed_at=now,
        due_at=None,
        attempt_count=F("attempt_count") + 1,
        last_trigger=trigger,
        last_outcome="",
        resend_by=None,
        resend_reason="",
        updated_at=now,
    )
    return Attempt.objects.create(
        delivery=delivery,
        number=delivery.attempt_count,
        trigger=trigger,
        started_at=now,
        triggered_by_id=triggered_by_id,
        reason=reason,
    )


def attempt_finish(*, attempt: Attempt, now: datetime, outcome: str, delivery: dict[str, Any], **fields: Any) -> bool:
    """Finish the attempt and resolve the delivery's claim with `delivery` (its new field values), in
    the caller's transaction. False when the claim was no longer ours (a status callback moved the
    row meanwhile: it wins) and the delivery was left as it was.

    `finished_at IS NULL` makes finishing a once-only operation: an attempt is never rewritten."""
    Attempt.objects.filter(id=attempt.id, finished_at__isnull=True).update(finished_at=now, outcome=outcome, **fields)
    mine = Delivery.objects.filter(id=attempt.delivery_id, status=Status.SENDING)
    return bool(mine.update(last_outcome=outcome, updated_at=now, **delivery))


def attempts_abandon(*, delivery_ids: Sequence[str], now: datetime, outcome: str, message: str) -> None:
    """Finish the open attempts of deliveries whose worker died mid-try, in one statement each."""
    Attempt.objects.filter(delivery_id__in=delivery_ids, finished_at__isnull=True).update(
        finished_at=now, outcome=outcome, twilio_message=message
    )
    Delivery.objects.filter(id__in=delivery_ids).update(last_outcome=outcome)
