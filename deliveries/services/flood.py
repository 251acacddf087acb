"""Flood control and opt-outs: whether a delivery must be held back instead of sent.

Read-only decisions, made by the send claim (services.send) while it holds the organisation's row lock, so
the counts are exact across any number of workers on any number of machines: the database is the
shared state, not process memory.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count, Q

from deliveries.models import Attempt, Credential, Delivery
from deliveries.selectors import active_opt_out

Hold = Delivery.Hold


def hold_for(delivery: Delivery, trigger: str, now: datetime) -> tuple[str, str]:
    """(hold, human reason), or ("", "") to send. An operator's resend is a human decision and is
    never held back; a flood-control summary is not subject to the limits it reports on."""
    if trigger == Attempt.Trigger.RESEND:
        return "", ""
    if active_opt_out(delivery=delivery):
        return Hold.OPTED_OUT, "The recipient opted out of texts from this sender (Twilio 21610)."
    if delivery.kind == Delivery.Kind.SUMMARY:
        return "", ""
    # One query for the three flood counts: the same text to this recipient lately, texts to this
    # recipient in the window, and (when that limit is on) texts from the organisation in the window.
    duplicate_seconds = settings.FLOOD_DUPLICATE_SECONDS
    window = now - timedelta(seconds=settings.FLOOD_WINDOW_SECONDS)
    recent = now - timedelta(seconds=duplicate_seconds)
    recipient_limit, org_limit = settings.FLOOD_RECIPIENT_LIMIT, settings.FLOOD_ORG_LIMIT
    others = Delivery.objects.filter(organization_id=delivery.organization_id, claimed_at__gte=min(window, recent))
    if not org_limit:
        others = others.filter(to_number=delivery.to_number)
    to_them = Q(to_number=delivery.to_number)
    counts = others.exclude(id=delivery.id).aggregate(
        # A failed earlier copy reached nobody, so it does not make this one a duplicate.
        duplicates=Count(
            "id",
            # A call reads the alert out: it is not a repeat of the text it escalates.
            filter=to_them
            & Q(body=delivery.body, channel=delivery.channel, claimed_at__gte=recent)
            & ~Q(status=Delivery.Status.FAILED),
        ),
        to_recipient=Count("id", filter=to_them & Q(claimed_at__gte=window)),
        from_org=Count("id", filter=Q(claimed_at__gte=window)),
    )
    if duplicate_seconds and counts["duplicates"]:
        return Hold.DUPLICATE, f"The same text went to this recipient less than {duplicate_seconds} s before."
    if recipient_limit and counts["to_recipient"] >= recipient_limit:
        return (
            Hold.RECIPIENT_LIMIT,
            f"{recipient_limit} texts to this recipient within {settings.FLOOD_WINDOW_SECONDS} s.",
        )
    if org_limit and counts["from_org"] >= org_limit:
        return Hold.ORG_LIMIT, f"{org_limit} texts from this organisation within {settings.FLOOD_WINDOW_SECONDS} s."
    return "", ""


def account_busy(delivery: Delivery) -> bool:
    """True when the Twilio account already has its cap of requests in flight. Twilio answers 429
    beyond its own concurrency cap; waiting our turn costs nothing, a 429 costs a retry."""
    cap = settings.TWILIO_MAX_CONCURRENT_PER_ACCOUNT
    if not cap or delivery.credential is None:
        return False
    account = delivery.credential.account_sid
    # Organisations may share a Twilio account, and the claim holds only its own organisation's lock:
    # lock the account's oldest credential row too, so every claim on the account counts in turn.
    # (SQLite has no row locks; its transactions already run one at a time.)
    if connection.features.has_select_for_update:
        Credential.objects.select_for_update().filter(account_sid=account).order_by("id").values_list("id").first()
    in_flight = Delivery.objects.filter(credential__account_sid=account, status=Delivery.Status.SENDING).count()
    return in_flight >= cap
