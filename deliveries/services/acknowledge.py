"""Acknowledgement: a recipient says they have the alert (a reply with its code, or 1 pressed on
an escalation's call). Recorded on the alert (who, when, which channel), and it stops the alert's
escalation: waiting timers are cancelled, and escalation steps not yet claimed are held back."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deliveries.models import Delivery, Escalation
from deliveries.observability import metrics
from deliveries.services import events, queue
from deliveries.sms import prepare_body

logger = logging.getLogger(__name__)
Status = Delivery.Status


def alert_acknowledge(*, delivery: Delivery, by: str, channel: str) -> bool:
    """Acknowledge this one alert. False when it was already acknowledged (nothing changes)."""
    now = timezone.now()
    with transaction.atomic():
        mine = Delivery.objects.filter(id=delivery.id, acknowledged_at__isnull=True)
        if not mine.update(acknowledged_at=now, acknowledged_by=by, ack_channel=channel, updated_at=now):
            return False
        events.record("acknowledged", delivery=delivery, **events.acknowledgement(delivery, by, channel, now))
        cancelled = _stop_escalation(delivery, now)
        notices = _notices(delivery, by, now) if delivery.notify_on_ack else []
        if notices:
            transaction.on_commit(lambda: queue.send(notices))
    metrics.acknowledged(channel, (now - delivery.created_at).total_seconds())
    logger.info("delivery %s acknowledged by %s (%s); %d escalation steps stopped", delivery.id, by, channel, cancelled)
    return True


def _same_alert(delivery: Delivery) -> dict[str, object]:
    """Every delivery of the same alert (`run` call): its texts, calls and next steps."""
    return {"alert_id": delivery.alert_id} if delivery.alert_id else {"id": delivery.id}


def _stop_escalation(delivery: Delivery, now: datetime) -> int:
    """Nothing escalates after an acknowledgement: the run call's waiting timers are cancelled and
    escalation steps (calls, next recipients) still pending are held back, never claimed."""
    alerts = Delivery.objects.filter(**_same_alert(delivery))
    cancelled = Escalation.objects.filter(alert__in=alerts, state=Escalation.State.WAITING).update(
        state=Escalation.State.CANCELLED, fired_at=now
    )
    held = Delivery.objects.filter(escalates__in=alerts, status=Status.PENDING).update(
        status=Status.SUPPRESSED,
        hold=Delivery.Hold.ACKNOWLEDGED,
        status_reason=f"The alert was acknowledged by {delivery.to_number} first.",
        settled_at=now,
        due_at=None,
        updated_at=now,
    )
    return cancelled + held


def _notices(delivery: Delivery, by: str, now: datetime) -> list[str]:
    """'Acknowledged by …' to the alert's other recipients who got it (configuration: ack_notify_others)."""
    others = (
        Delivery.objects.filter(**_same_alert(delivery), channel=Delivery.Channel.SMS, kind=Delivery.Kind.ALERT)
        .exclude(to_number=delivery.to_number)
        .exclude(status__in=[Status.FAILED, Status.SUPPRESSED])
    )
    text = prepare_body(
        f"ext-twilio: acknowledged by {by} at {now:%H:%M} UTC: {delivery.body[:60]}", settings.SMS_MAX_BODY_CHARS
    )
    ids = []
    for other in others:
        notice = Delivery.objects.create(
            organization_id=delivery.organization_id,
            credential_id=other.credential_id,
            alert_id=delivery.alert_id,
            idempotency_key=delivery.idempotency_key,
            ident="ext-twilio acknowledgement",
            from_number=other.from_number,
            to_number=other.to_number,
            body=text.text,
            original_length=text.original_length,
            encoding=text.encoding,
            segments=text.segments,
            kind=Delivery.Kind.NOTICE,
            due_at=now,
        )
        ids.append(str(notice.id))
    return ids
