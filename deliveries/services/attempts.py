"""The one writer of attempt bookkeeping: an Attempt row opened when a try starts (a send, or a look at
Twilio after an ambiguous answer) and finished exactly once, and the delivery's copies of the latest
attempt (`last_trigger`, `last_outcome`, kept on Delivery for the desk's indexed filters).

Two counts, each for what it counts: `Attempt.number` numbers a delivery's attempts of every kind, in
order; `Delivery.attempt_count` counts its sends to Twilio (POSTs) only, which the retry policy limits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db import transaction
from django.db.models import F

from deliveries.models import Attempt, Delivery

Status = Delivery.Status


def attempt_open(
    *, delivery: Delivery, trigger: str, now: datetime, triggered_by_id: int | None = None, reason: str = ""
) -> Attempt:
    """Claim the (locked) delivery for this try: `sending`, nothing due, and a new attempt. Run it in
    the claim's transaction."""
    sends = trigger != Attempt.Trigger.RECONCILE
    claimed = {
        "status": Status.SENDING,
        "claimed_at": now,
        "due_at": None,
        "last_trigger": trigger,
        "last_outcome": "",
        "resend_by": None,  # a waiting resend is this attempt now
        "resend_reason": "",
        "updated_at": now,
    }
    Delivery.objects.filter(id=delivery.id).update(
        **claimed, **({"attempt_count": F("attempt_count") + 1} if sends else {})
    )
    for name, value in claimed.items():
        setattr(delivery, name, value)
    delivery.attempt_count += 1 if sends else 0
    return Attempt.objects.create(
        delivery=delivery,
        number=delivery.attempts.count() + 1,
        trigger=trigger,
        started_at=now,
        triggered_by_id=triggered_by_id,
        reason=reason,
    )


def attempt_finish(
    *, attempt: Attempt, now: datetime, outcome: str, delivery: dict[str, object], **fields: object
) -> bool:
    """Finish the attempt and resolve the delivery's claim with `delivery` (its new field values), in
    one transaction. False when the claim was no longer ours (a status callback moved the row meanwhile:
    it wins) and the delivery was left as it was. `finished_at IS NULL` makes finishing a once-only
    operation: an attempt is never rewritten."""
    with transaction.atomic(savepoint=False):  # a part of the caller's transaction, if it has one
        Attempt.objects.filter(id=attempt.id, finished_at__isnull=True).update(
            finished_at=now, outcome=outcome, **fields
        )
        mine = Delivery.objects.filter(id=attempt.delivery_id, status=Status.SENDING).update(
            last_outcome=outcome, updated_at=now, **delivery
        )
    return bool(mine)


def attempts_abandon(*, delivery_ids: Sequence[str], now: datetime, outcome: str, message: str) -> None:
    """Finish the open attempts of deliveries whose worker died mid-try."""
    Attempt.objects.filter(delivery_id__in=delivery_ids, finished_at__isnull=True).update(
        finished_at=now, outcome=outcome, twilio_message=message
    )
    Delivery.objects.filter(id__in=delivery_ids).update(last_outcome=outcome)
