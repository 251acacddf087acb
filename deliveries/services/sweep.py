"""The sweeper (Celery beat): the safety net under every queue hand-off.

It selects on each delivery's own cursor, `due_at` (set by whoever made the delivery due), so an
unrelated write never postpones a sweep, and it updates what it swept in one statement per step:
- a pending or ambiguous row whose task is overdue (broker down at accept time, a message dropped)
  is enqueued again; the claim makes a duplicate task harmless, so the threshold can be short;
- a claim whose worker died becomes ambiguous and is reconciled at once: never a blind second POST;
- flood-control summaries go out once their window has closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from deliveries.models import Attempt, Credential, Delivery
from deliveries.services import approvals, escalate, events, queue
from deliveries.services.attempts import attempts_abandon
from deliveries.sms import prepare_body

logger = logging.getLogger(__name__)
Status = Delivery.Status
BATCH = 1000


@dataclass(frozen=True)
class SweepReport:
    requeued: int = 0
    lost_in_flight: int = 0
    reconciles: int = 0
    summaries: int = 0


def deliveries_sweep() -> SweepReport:
    now = timezone.now()
    overdue = now - timedelta(seconds=settings.SWEEP_PENDING_SECONDS)
    lost = _lost_claims_to_ambiguous(now)
    reconciles = _enqueue_due(Status.AMBIGUOUS, overdue, now, queue.reconcile, first=lost)
    requeued = _enqueue_due(Status.PENDING, overdue, now, queue.send)
    escalate.timers_sweep(now=now)  # escalation timers whose task was lost
    events.events_sweep(now=now)  # events for LimaCharlie whose task was lost
    approvals.approvals_sweep(now=now)  # approvals whose timeout task was lost
    report = SweepReport(requeued, len(lost), reconciles, flood_summaries_send(now=now))
    if report != SweepReport():
        logger.info("sweep: %s", report)
    return report


def _lost_claims_to_ambiguous(now: datetime) -> list[str]:
    """Claims older than SWEEP_STUCK_SECONDS: the task time limit is far below it, so no live worker
    still holds them. The message may exist at Twilio, so they become ambiguous."""
    stuck = now - timedelta(seconds=settings.SWEEP_STUCK_SECONDS)
    with transaction.atomic():
        lost = Delivery.objects.select_for_update().filter(status=Status.SENDING, claimed_at__lt=stuck)
        ids = [str(i) for i in lost.values_list("id", flat=True)[:BATCH]]
        Delivery.objects.filter(id__in=ids).update(
            status=Status.AMBIGUOUS,
            due_at=now,
            updated_at=now,
            error_message="The worker stopped during the attempt; the message may exist at Twilio.",
        )
        attempts_abandon(
            delivery_ids=ids, now=now, outcome=Attempt.Outcome.AMBIGUOUS, message="worker lost during the attempt"
        )
    return ids


def _enqueue_due(
    status: str, overdue: datetime, now: datetime, enqueue: Callable[[Sequence[str]], int], first: Sequence[str] = ()
) -> int:
    """Enqueue the rows of `status` whose task is overdue (oldest first), then mark the ones that
    went out as due again from now, in one statement."""
    due = Delivery.objects.filter(status=status, due_at__lt=overdue).order_by("due_at")
    ids = [*first, *(str(i) for i in due.values_list("id", flat=True)[:BATCH])]
    sent = enqueue(ids)
    Delivery.objects.filter(id__in=ids[:sent], status=status).update(due_at=now)
    return sent


def flood_summaries_send(*, now: datetime) -> int:
    """When the window in which alerts to a recipient were held back has closed, send that recipient
    one text saying how many were held back, so silence never hides a storm."""
    closed = now - timedelta(seconds=settings.FLOOD_WINDOW_SECONDS)
    groups = (
        _unsummarised()
        .values("organization_id", "from_number", "to_number")
        .annotate(first=models.Min("created_at"))
        .filter(first__lte=closed)
    )
    created = [
        summary
        for g in groups[:BATCH]
        if (
            summary := _summarise(
                organization_id=g["organization_id"], sender=g["from_number"], recipient=g["to_number"], now=now
            )
        )
    ]
    if created:
        queue.send(created)
    return len(created)


def _unsummarised() -> models.QuerySet[Delivery]:
    """The alerts held back by flood control that no summary has told the recipient about yet: the rows
    of the partial index `delivery_unsummarised`."""
    return Delivery.objects.filter(
        status=Status.SUPPRESSED, hold__in=sorted(Delivery.FLOOD_HOLDS), summary__isnull=True
    )


def _summarise(*, organization_id: int, sender: str, recipient: str, now: datetime) -> str | None:
    """One summary delivery for the held-back alerts of one (organisation, sender, recipient)."""
    with transaction.atomic():
        held = (
            _unsummarised()
            .select_for_update()
            .filter(organization_id=organization_id, from_number=sender, to_number=recipient)
        )
        rows = list(held.order_by("created_at").values_list("id", "credential_id"))
        if not rows:
            return None
        ids = [i for i, _ in rows]
        # Sent through the account the latest held-back alert would have used, of those still usable
        # (never one Twilio refused); with none, the summary fails and says why.
        usable = set(Credential.objects.usable().filter(id__in={c for _, c in rows}).values_list("id", flat=True))
        credential_id = next((c for _, c in reversed(rows) if c in usable), None)
        prepared = prepare_body(
            f"ext-twilio: {len(ids)} further alert{'s were' if len(ids) != 1 else ' was'} held back by flood "
            "control; see the audit desk.",
            settings.SMS_MAX_BODY_CHARS,
        )
        summary = Delivery.objects.create(
            organization_id=organization_id,
            credential_id=credential_id,
            ident="ext-twilio flood control",
            from_number=sender,
            to_number=recipient,
            body=prepared.text,
            original_length=prepared.original_length,
            truncated=False,
            encoding=prepared.encoding,
            segments=prepared.segments,
            kind=Delivery.Kind.SUMMARY,
            due_at=now,
        )
        Delivery.objects.filter(id__in=ids).update(summary=summary, updated_at=now)
    return str(summary.id)
