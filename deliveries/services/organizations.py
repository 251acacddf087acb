"""Organisations as LimaCharlie tells us about them: subscription events and error reports."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from deliveries.models import ErrorReport, Organization
from deliveries.services.credentials import credentials_erase, forget

logger = logging.getLogger(__name__)
Subscription = Organization.Subscription


def organization_record_event(*, oid: str, event_name: str) -> Organization:
    """Record a subscribe / unsubscribe / update event. Leaving erases the stored credential: an org
    that unsubscribed has withdrawn its consent to our holding its Twilio token."""
    now = timezone.now()
    with transaction.atomic():
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


def error_report_record(*, oid: str, error: str) -> ErrorReport:
    report = ErrorReport.objects.create(oid=oid[:64], error=error)
    logger.warning("LimaCharlie error report for org %s: %s", oid or "-", error[:2000])
    return report
