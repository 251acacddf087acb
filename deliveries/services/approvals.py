"""Approvals from a phone (`request_approval`, in ext-feedback's words): a question texted (and, with
`escalate: call`, asked by a call) to the people named; the first valid answer wins, or the timeout.

The decision is claimed by a conditional update of the Approval row (`decided_at IS NULL`), so an
answer and the timeout can never both win; whoever answers later is told who decided and when. Only
the people asked can answer, with the approval's code: "4K7Q Y" or "4K7Q N" by text, 1 or 2 on a call.
A decision stops the alert's escalation (as an acknowledgement does) and is sent to LimaCharlie as an
`approved` or `denied` event carrying its content and the rule's context."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deliveries.models import Approval, Delivery, InboundMessage, Organization
from deliveries.services import events, queue
from deliveries.services.acknowledge import alert_acknowledge
from deliveries.services.codes import ALPHABET, LENGTH, codes_in

logger = logging.getLogger(__name__)
Decision = Approval.Decision
YES, NO = frozenset({"Y", "YES", "APPROVE"}), frozenset({"N", "NO", "DENY"})
DIGITS = {"1": Decision.APPROVED, "2": Decision.DENIED}


@dataclass(frozen=True)
class ApprovalPlan:
    question: str
    approved_content: Any = None
    denied_content: Any = None
    timeout_seconds: int = 300
    timeout_choice: str = Decision.DENIED


def instruction(plan: ApprovalPlan, code: str) -> str:
    """What follows the question (docs/rules.md quotes it), e.g. " Reply 4K7Q Y to approve or 4K7Q N
    to deny. (Denied in 5 minutes without an answer.)"."""
    return (
        f" Reply {code} Y to approve or {code} N to deny. "
        f"({plan.timeout_choice.capitalize()} in {_duration(plan.timeout_seconds)} without an answer.)"
    )


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hour{'s' if seconds != 3600 else ''}"
    if seconds % 60 == 0:
        return f"{seconds // 60} minute{'s' if seconds != 60 else ''}"
    return f"{seconds} seconds"


def code_new(*, organization_id: int, recipients: list[str]) -> str:
    """A code no open approval of the organisation holds, nor any unacknowledged alert of these people."""
    taken = set(
        Approval.objects.filter(alert__organization_id=organization_id, decided_at__isnull=True).values_list(
            "code", flat=True
        )
    ) | set(
        Delivery.objects.filter(organization_id=organization_id, to_number__in=recipients, acknowledged_at__isnull=True)
        .exclude(ack_code="")
        .values_list("ack_code", flat=True)
    )
    while True:
        code = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        if code not in taken:
            return code


def approval_open(*, alert: Any, plan: ApprovalPlan, code: str, now: datetime) -> Approval:
    """In the accepting transaction: the Approval, and its timeout task once that commits."""
    approval = Approval.objects.create(
        alert=alert,
        code=code,
        question=plan.question,
        approved_content=plan.approved_content,
        denied_content=plan.denied_content,
        timeout_seconds=plan.timeout_seconds,
        timeout_choice=plan.timeout_choice,
        due_at=now + timedelta(seconds=plan.timeout_seconds),
    )
    # A countdown longer than half the broker's visibility timeout would be redelivered while it waits
    # (Redis): such a timeout is left to the sweeper, which decides every due approval on its pass.
    if plan.timeout_seconds <= settings.BROKER_VISIBILITY_TIMEOUT_SECONDS / 2:
        transaction.on_commit(lambda: queue.approval_timeout([approval.pk], countdown=plan.timeout_seconds))
    return approval


def approval_decide(
    *, approval_id: int, decision: str, by: str, channel: str, delivery: Delivery | None = None
) -> tuple[bool, Approval]:
    """Claim the decision; (True, approval) for the one caller that won it."""
    now = timezone.now()
    with transaction.atomic():
        won = Approval.objects.filter(pk=approval_id, decided_at__isnull=True).update(
            decision=decision, decided_at=now, decided_by=by[:16], decided_channel=channel, decided_delivery=delivery
        )
        approval = Approval.objects.select_related("alert").get(pk=approval_id)
        if not won:
            return False, approval
        content = approval.approved_content if decision == Decision.APPROVED else approval.denied_content
        events.record(
            decision,
            delivery=delivery,
            alert=approval.alert,
            question=approval.question,
            content=content,
            responder=by,
            responder_channel=channel,
        )
        voice = delivery is not None and delivery.channel == Delivery.Channel.VOICE
        asked = delivery.escalates if voice and delivery is not None else delivery
        asked = asked or approval.alert.deliveries.filter(kind=Delivery.Kind.ALERT).order_by("created_at").first()
        if asked is not None:  # nothing escalates after a decision
            alert_acknowledge(delivery=asked, by=by, channel=channel)
    logger.info("approval %s %s by %s (%s)", approval.pk, decision, by, channel)
    return True, approval


def _told(approval: Approval) -> str:
    who = "the timeout" if approval.decided_by == "timeout" else approval.decided_by
    return f"ext-twilio: already {approval.decision} by {who} at {approval.decided_at:%H:%M} UTC."


def approval_answer(*, organization: Organization, message: InboundMessage, from_number: str, body: str) -> str:
    """A text that answers an approval ("4K7Q Y"): the reply to send, or "" when it answers none (then it
    is read as an acknowledgement). Only someone the approval was sent to can answer it."""
    words = set("".join(ch if ch.isalnum() else " " for ch in body.upper()).split())
    choice = Decision.APPROVED if words & YES else Decision.DENIED if words & NO else ""
    codes = codes_in(body)
    if not choice or not codes or (words & YES and words & NO):
        return ""
    asked = Delivery.objects.filter(
        organization=organization, to_number=from_number, channel=Delivery.Channel.SMS, kind=Delivery.Kind.ALERT
    )
    approval = (
        Approval.objects.filter(alert__deliveries__in=asked, code__in=codes).order_by("-created_at").distinct().first()
    )
    if approval is None:
        return ""
    delivery = asked.filter(alert_id=approval.alert_id).order_by("created_at").first()
    won, approval = approval_decide(
        approval_id=approval.pk, decision=choice, by=from_number, channel="sms", delivery=delivery
    )
    message.meaning, message.acknowledged = InboundMessage.Meaning.ACK, delivery
    return f"ext-twilio: {choice}. Thank you." if won else _told(approval)


def approval_keypress(*, call: Delivery, digits: str) -> str | None:
    """A keypress on an approval's call: what to say back, or None when the call is not an approval's."""
    approval = Approval.objects.filter(alert_id=call.alert_id).first() if call.alert_id else None
    if approval is None:
        return None
    choice = DIGITS.get(digits)
    if choice is None:
        return "Nothing recorded. Goodbye."
    won, approval = approval_decide(
        approval_id=approval.pk, decision=choice, by=call.to_number, channel="voice", delivery=call
    )
    return f"{choice.capitalize()}. Thank you." if won else _told(approval).removeprefix("ext-twilio: ").capitalize()


def approval_timeout(*, approval_id: int) -> str:
    """The timeout's moment: its choice wins unless someone answered first."""
    approval = Approval.objects.filter(pk=approval_id).first()
    if approval is None or approval.decided_at is not None:
        return "decided" if approval else "missing"
    if approval.due_at > timezone.now() + timedelta(seconds=1):
        return "early"  # a redelivered task ahead of time; its own countdown task comes later
    won, _ = approval_decide(approval_id=approval_id, decision=approval.timeout_choice, by="timeout", channel="timeout")
    return approval.timeout_choice if won else "decided"


def approvals_sweep(*, now: datetime) -> int:
    """Approvals due and undecided: a timeout longer than a countdown may wait, or whose task was lost.
    Decided within SWEEP_INTERVAL_SECONDS of their moment; the task and a sweep never both win."""
    ids = list(Approval.objects.filter(decided_at__isnull=True, due_at__lte=now).values_list("pk", flat=True)[:1000])
    return queue.approval_timeout(ids) if ids else 0
