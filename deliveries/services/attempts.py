"""The one writer of attempt bookkeeping: an Attempt row opened when a try starts and finished
exactly once, and the delivery's copies of the latest attempt (`attempt_count`, `last_trigger`,
`last_outcome`, kept on Delivery for the desk's indexed filters)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from deliveries.models import Attempt, Delivery
from deliveries.services import sql

Status = Delivery.Status
ATTEMPT = Attempt._meta.db_table


def attempt_open(
    *, delivery: Delivery, trigger: str, now: datetime, triggered_by_id: int | None = None, reason: str = ""
) -> Attempt:
    """Claim the (locked) delivery for this try: `sending`, nothing due, and a new attempt. Written by
    hand, as the send path's reads are (services.sql says why)."""
    claiming = sql.updating(
        Delivery, _claimed(trigger, now), "id = %s", [sql.key(delivery.id)], also="attempt_count = attempt_count + 1"
    )
    opening = sql.inserting(
        Attempt, {**_opening(delivery.id, trigger, now, triggered_by_id, reason), "number": delivery.attempt_count + 1}
    )
    _, new = sql.together(claiming, opening)  # one statement on PostgreSQL (sql.together says why)
    assert new is not None
    return attempt_opened(delivery, new[0], trigger, now, triggered_by_id, reason)


def opening_clauses(
    delivery_id: Any, trigger: str, now: datetime, when: sql.Statement, triggered_by_id: int | None = None
) -> sql.Statement:
    """attempt_open's two writes as clauses of a WITH (`claimed`, `opened`), made only if the delivery is
    pending with no resend waiting, is not a summary, and `when` (a condition in SQL) holds: the claim
    that decides in its own statement (services.send). `opened` answers the new attempt's id."""
    condition, condition_params = when
    claiming, claiming_params = sql.updating(
        Delivery,
        _claimed(trigger, now),
        f"id = %s AND status = %s AND resend_by_id IS NULL AND kind <> %s AND ({condition})",
        [sql.key(delivery_id), Status.PENDING, Delivery.Kind.SUMMARY, *condition_params],
        also="attempt_count = attempt_count + 1",
    )
    columns, values = sql.prepared(Attempt, _opening(delivery_id, trigger, now, triggered_by_id, ""))
    return (
        f"claimed AS ({claiming} RETURNING attempt_count), "
        f"opened AS (INSERT INTO {ATTEMPT} ({', '.join(columns)}, number)"
        f" SELECT {', '.join(['%s'] * len(values))}, attempt_count FROM claimed RETURNING id)",
        [*claiming_params, *values],
    )


def attempt_opened(
    delivery: Delivery, attempt_id: int, trigger: str, now: datetime, triggered_by_id: int | None, reason: str
) -> Attempt:
    """The delivery as its claim left it, and its new attempt (id `attempt_id`), as instances."""
    delivery.attempt_count += 1
    delivery.status, delivery.claimed_at, delivery.due_at = Status.SENDING, now, None
    delivery.last_trigger, delivery.last_outcome = trigger, ""
    delivery.resend_by_id, delivery.resend_reason = None, ""  # a waiting resend is this attempt now
    attempt = Attempt(
        id=attempt_id,
        delivery=delivery,
        number=delivery.attempt_count,
        trigger=trigger,
        started_at=now,
        triggered_by_id=triggered_by_id,
        reason=reason,
    )
    attempt._state.adding, attempt._state.db = False, "default"
    return attempt


def _claimed(trigger: str, now: datetime) -> dict[str, Any]:
    """What a claim writes on the delivery, besides counting the attempt."""
    return {
        "status": Status.SENDING,
        "claimed_at": now,
        "due_at": None,
        "last_trigger": trigger,
        "last_outcome": "",
        "resend_by": None,  # a waiting resend is this attempt now
        "resend_reason": "",
        "updated_at": now,
    }


def _opening(delivery_id: Any, trigger: str, now: datetime, triggered_by_id: int | None, reason: str) -> dict[str, Any]:
    """The new attempt's fields, but its number."""
    return {
        "delivery": delivery_id,
        "trigger": trigger,
        "started_at": now,
        "reason": reason,
        "triggered_by": triggered_by_id,
        "outcome": "",
        "twilio_message": "",
        "twilio_request_id": "",
    }


def attempt_finish(*, attempt: Attempt, now: datetime, outcome: str, delivery: dict[str, Any], **fields: Any) -> bool:
    """Finish the attempt and resolve the delivery's claim with `delivery` (its new field values), both
    or neither: one statement on PostgreSQL, else a transaction (sql.together), which needs no caller's
    transaction. False when the claim was no longer ours (a status callback moved the row meanwhile:
    it wins) and the delivery was left as it was.

    `finished_at IS NULL` makes finishing a once-only operation: an attempt is never rewritten."""
    mine, _ = sql.together(
        sql.updating(
            Attempt,
            {"finished_at": now, "outcome": outcome, **fields},
            "id = %s AND finished_at IS NULL",
            [attempt.id],
        ),
        sql.updating(
            Delivery,
            {"last_outcome": outcome, "updated_at": now, **delivery},
            "id = %s AND status = %s",
            [sql.key(attempt.delivery_id), Status.SENDING],
        ),
    )
    return bool(mine)


def attempts_abandon(*, delivery_ids: Sequence[str], now: datetime, outcome: str, message: str) -> None:
    """Finish the open attempts of deliveries whose worker died mid-try, in one statement each."""
    Attempt.objects.filter(delivery_id__in=delivery_ids, finished_at__isnull=True).update(
        finished_at=now, outcome=outcome, twilio_message=message
    )
    Delivery.objects.filter(id__in=delivery_ids).update(last_outcome=outcome)
