"""The one vocabulary of delivery statuses. Everything else derives from the table below: what is in
flight, what is final, what may be resent, what a handset may still receive, how statuses rank (a
status only moves to a higher rank), the label and badge colour, the chart's outcome class, and
which of Twilio's message statuses map onto ours.

Adding a status means adding one row to STATUSES; the module refuses to import (and
tests/deliveries/test_status.py fails) while a status has no row.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models


class Status(models.TextChoices):
    PENDING = "pending", "Pending"  # in our queue (first try or a scheduled retry)
    SENDING = "sending", "Sending"  # claimed by a worker; POST may be in flight
    QUEUED = "queued", "Queued"  # Twilio has it
    ACCEPTED = "accepted", "Accepted"  # Twilio has it (Messaging Service)
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    UNDELIVERED = "undelivered", "Undelivered"
    FAILED = "failed", "Failed"  # permanent: never reached Twilio's queue
    AMBIGUOUS = "ambiguous", "Ambiguous"  # may exist at Twilio; must be reconciled, never blindly re-sent
    SUPPRESSED = "suppressed", "Suppressed"  # deliberately not sent (opt-out, flood control)


class OutcomeClass(models.TextChoices):
    """The at-a-glance chart's classes, in stacking order."""

    SENT = "sent", "Sent"
    WAITING = "waiting", "Waiting"
    AMBIGUOUS = "ambiguous", "Ambiguous"
    FAILED = "failed", "Failed"
    SUPPRESSED = "suppressed", "Suppressed"


CLASS_COLOURS: dict[str, str] = {
    OutcomeClass.SENT: "#15803d",
    OutcomeClass.WAITING: "#6b7280",
    OutcomeClass.AMBIGUOUS: "#b45309",
    OutcomeClass.FAILED: "#b91c1c",
    OutcomeClass.SUPPRESSED: "#7c3aed",
}


@dataclass(frozen=True)
class Meaning:
    in_flight: bool  # a send of ours is queued or being posted: nothing else may start one
    final: bool  # nothing will change it any more (a resend aside)
    may_still_arrive: bool  # Twilio has or may have it, with no final word: the handset may still get it
    rank: int  # a status only ever moves to a higher rank; our own states before Twilio's are 0
    colour: str  # the desk's badge
    outcome_class: OutcomeClass
    twilio: tuple[str, ...] = ()  # Twilio message (and call) statuses that mean this status

    @property
    def resendable(self) -> bool:
        # A resend may start from any status in which no send of ours is in flight: a second task
        # would race the first.
        return not self.in_flight


_ = OutcomeClass
STATUSES: dict[Status, Meaning] = {
    Status.PENDING: Meaning(True, False, False, 0, "#6b7280", _.WAITING),
    Status.SENDING: Meaning(True, False, True, 0, "#2563eb", _.WAITING),
    Status.AMBIGUOUS: Meaning(False, False, True, 0, "#b45309", _.AMBIGUOUS),
    Status.QUEUED: Meaning(False, False, True, 1, "#0e7490", _.SENT, ("queued", "sending")),
    Status.ACCEPTED: Meaning(False, False, True, 1, "#0e7490", _.SENT, ("accepted", "scheduled")),
    Status.SENT: Meaning(False, False, True, 3, "#15803d", _.SENT, ("sent", "ringing", "in-progress")),
    Status.DELIVERED: Meaning(False, True, False, 4, "#166534", _.SENT, ("delivered", "read", "completed")),
    Status.UNDELIVERED: Meaning(False, True, False, 4, "#b91c1c", _.FAILED, ("undelivered", "busy", "no-answer")),
    Status.FAILED: Meaning(False, True, False, 4, "#b91c1c", _.FAILED, ("failed", "canceled")),
    Status.SUPPRESSED: Meaning(False, True, False, 4, "#7c3aed", _.SUPPRESSED),
}
del _


def check_classified(choices: type[models.TextChoices], meanings: dict[Status, Meaning]) -> None:
    """Refuse a status that has no meaning: every derived set below would silently leave it out."""
    missing = {str(c) for c in choices} - {str(s) for s in meanings}
    if missing:
        raise RuntimeError(f"deliveries.status: no meaning given for {sorted(missing)}")


check_classified(Status, STATUSES)

IN_FLIGHT = frozenset(s for s, m in STATUSES.items() if m.in_flight)
FINAL = frozenset(s for s, m in STATUSES.items() if m.final)
RESENDABLE = frozenset(s for s, m in STATUSES.items() if m.resendable)
AT_TWILIO_UNSETTLED = frozenset(s for s, m in STATUSES.items() if m.may_still_arrive and m.rank > 0)
_FROM_TWILIO: dict[str, Status] = {t: s for s, m in STATUSES.items() for t in m.twilio}


def from_twilio(twilio_status: str) -> Status | None:
    """Our status for one of Twilio's message statuses, or None for one we do not track."""
    return _FROM_TWILIO.get(twilio_status)


def moves_forward(current: str, new: Status) -> bool:
    """Callbacks arrive out of order and more than once: a status only moves to a higher rank."""
    return STATUSES[new].rank > STATUSES[Status(current)].rank


def colour(status: str) -> str:
    return STATUSES[Status(status)].colour


def statuses_of_class(outcome_class: OutcomeClass) -> tuple[Status, ...]:
    return tuple(s for s, m in STATUSES.items() if m.outcome_class == outcome_class)
