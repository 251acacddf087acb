"""Organisations as LimaCharlie tells us about them: subscription events and error reports; and, at an
operator's request, everything stored about one organisation erased."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from deliveries.models import (
    AlertRequest,
    Approval,
    Attempt,
    Credential,
    Delivery,
    ErrorReport,
    Escalation,
    HandledCall,
    InboundMessage,
    OptOut,
    Organization,
    OutboundEvent,
    StatusEvent,
    WebhookAdapter,
)
from deliveries.services.credentials import credentials_erase, forget

logger = logging.getLogger(__name__)
Subscription = Organization.Subscription


def _first_time(*, oid: str, message_type: str, idempotency_key: str) -> bool:
    """Record that this call is being handled; False if it was before (a replay or a retry). Call
    inside the transaction that makes the change, so the mark and the change commit together. An
    empty key (a caller inside this service, not LimaCharlie) is always new."""
    if not idempotency_key:
        return True
    _, created = HandledCall.objects.get_or_create(oid=oid, message_type=message_type, idempotency_key=idempotency_key)
    if not created:
        logger.info("repeat of %s idempotency key %s for org %s: nothing done", message_type, idempotency_key, oid)
    return created


def organization_record_event(*, oid: str, event_name: str, idempotency_key: str = "") -> Organization | None:
    """Record a subscribe / unsubscribe / update event, once per idempotency key (None for a repeat).
    Leaving erases the stored credential: an org that unsubscribed has withdrawn its consent to our
    holding its Twilio token."""
    now = timezone.now()
    with transaction.atomic():
        if not _first_time(oid=oid, message_type="event", idempotency_key=idempotency_key):
            return None
        org, _ = Organization.objects.select_for_update().get_or_create(oid=oid)
        org.last_event_at = now
        if event_name == "subscribe":
            org.subscription, org.subscribed_at = Subscription.SUBSCRIBED, now
        elif event_name == "unsubscribe":
            org.subscription, org.unsubscribed_at = Subscription.UNSUBSCRIBED, now
            credentials_erase(organization=org)
        elif event_name == "update":
            forget(oid=oid)  # the configuration may name another secret now
            if org.subscription != Subscription.SUBSCRIBED:
                # A daily update proves the org is subscribed even if we missed its subscribe event.
                org.subscription = Subscription.SUBSCRIBED
                org.subscribed_at = org.subscribed_at or now
        org.save()
    logger.info("organisation event %s for org %s", event_name, oid)
    return org


def error_report_record(*, oid: str, error: str, idempotency_key: str = "") -> ErrorReport | None:
    """Store an error report, once per idempotency key (None for a repeat)."""
    with transaction.atomic():
        if not _first_time(oid=oid, message_type="error_report", idempotency_key=idempotency_key):
            return None
        report = ErrorReport.objects.create(oid=oid[:64], error=error)
    logger.warning("LimaCharlie error report for org %s: %s", oid or "-", error[:2000])
    return report


def organization_erase(*, oid: str, confirm: bool) -> dict[str, int] | None:
    """Everything stored about one organisation, by kind: counted, and deleted when `confirm`d, in one
    transaction (None: no such organisation). Every relation between these rows is PROTECT, so that no
    part of the audit trail can go by accident: they are deleted here children first."""
    org = Organization.objects.filter(oid=oid).first()
    if org is None:
        return None
    deliveries = Delivery.objects.filter(organization=org)
    kinds = [
        ("events for LimaCharlie", OutboundEvent.objects.filter(organization=org)),
        ("approvals", Approval.objects.filter(alert__organization=org)),
        ("webhook adapters", WebhookAdapter.objects.filter(organization=org)),
        ("opt-outs", OptOut.objects.filter(organization=org)),
        ("escalation timers", Escalation.objects.filter(alert__organization=org)),
        ("inbound messages", InboundMessage.objects.filter(organization=org)),
        ("status events", StatusEvent.objects.filter(delivery__organization=org)),
        ("attempts", Attempt.objects.filter(delivery__organization=org)),
        ("deliveries", deliveries),
        ("alert requests", AlertRequest.objects.filter(organization=org)),
        ("credentials", Credential.objects.filter(organization=org)),
        ("handled events", HandledCall.objects.filter(oid=oid)),
        ("error reports", ErrorReport.objects.filter(oid=oid)),
        ("organisation", Organization.objects.filter(id=org.id)),
    ]
    if not confirm:
        return {name: rows.count() for name, rows in kinds}
    with transaction.atomic():
        deliveries.update(summary=None, escalates=None)  # deliveries of one organisation point at each other
        counts = {name: rows.delete()[0] for name, rows in kinds}
    forget(oid=oid)
    logger.warning("erased organisation %s: %s", oid, ", ".join(f"{n} {name}" for name, n in counts.items()))
    return counts


def organization_name_record(*, oid: str, name: str) -> None:
    """The organisation's name as LimaCharlie gives it (an event's org info). Blank names are ignored."""
    name = name.strip()[:200]
    if name:
        Organization.objects.filter(oid=oid).exclude(name=name).update(name=name, updated_at=timezone.now())
