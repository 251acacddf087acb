"""Flood control and opt-outs: whether a delivery must be held back instead of sent.

Read-only decisions, made by services.delivery_send while it holds the organisation's row lock, so
the counts are exact across any number of workers on any number of machines: the database is the
shared state, not process memory.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings

from deliveries.models import Attempt, Delivery, OptOut

Hold = Delivery.Hold


def hold_for(delivery: Delivery, trigger: str, now: datetime) -> tuple[str, str]:
    """(hold, human reason), or ("", "") to send. An operator's resend is a human decision and is
    never held back; a flood-control summary is not subject to the limits it reports on."""
    if trigger == Attempt.Trigger.RESEND:
        return "", ""
    if OptOut.objects.filter(
        organization_id=delivery.organization_id, sender=delivery.from_number, recipient=delivery.to_number,
        cleared_at__isnull=True,
    ).exists():
        return Hold.OPTED_OUT, "The recipient opted out of texts from this sender (Twilio 21610)."
    if delivery.kind == Delivery.Kind.SUMMARY:
        return "", ""
    others = Delivery.objects.filter(organization_id=delivery.organization_id).exclude(id=delivery.id)
    duplicate_seconds = settings.FLOOD_DUPLICATE_SECONDS
    # A failed earlier copy reached nobody, so it does not make this one a duplicate.
    if duplicate_seconds and others.filter(
        to_number=delivery.to_number, body=delivery.body, claimed_at__gte=now - timedelta(seconds=duplicate_seconds)
    ).exclude(status=Delivery.Status.FAILED).exists():
        return Hold.DUPLICATE, f"The same text went to this recipient less than {duplicate_seconds} s before."
    window = now - timedelta(seconds=settings.FLOOD_WINDOW_SECONDS)
    limit = settings.FLOOD_RECIPIENT_LIMIT
    if limit and others.filter(to_number=delivery.to_number, claimed_at__gte=window).count() >= limit:
        return Hold.RECIPIENT_LIMIT, f"{limit} texts to this recipient within {settings.FLOOD_WINDOW_SECONDS} s."
    limit = settings.FLOOD_ORG_LIMIT
    if limit and others.filter(claimed_at__gte=window).count() >= limit:
        return Hold.ORG_LIMIT, f"{limit} texts from this organisation within {settings.FLOOD_WINDOW_SECONDS} s."
    return "", ""


def account_busy(delivery: Delivery) -> bool:
    """True when the Twilio account already has its cap of requests in flight. Twilio answers 429
    beyond its own concurrency cap; waiting our turn costs nothing, a 429 costs a retry."""
    cap = settings.TWILIO_MAX_CONCURRENT_PER_ACCOUNT
    if not cap:
        return False
    in_flight = Delivery.objects.filter(
        organization__twilio_account_sid=delivery.organization.twilio_account_sid, status=Delivery.Status.SENDING
    ).count()
    return in_flight >= cap
