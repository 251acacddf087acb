"""Flood control and opt-outs: whether a delivery must be held back instead of sent.

Read-only decisions, made by the send claim (services.send) while it holds the organisation's row lock, so
the counts are exact across any number of workers on any number of machines: the database is the
shared state, not process memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection

from deliveries.models import Attempt, Delivery
from deliveries.services import sql

Hold = Delivery.Hold


def hold_for(delivery: Delivery, trigger: str, now: datetime) -> tuple[str, str]:
    """(hold, human reason), or ("", "") to send. An operator's resend is a human decision and is
    never held back; a flood-control summary is not subject to the limits it reports on."""
    if trigger == Attempt.Trigger.RESEND:
        return "", ""
    counts = _counts(delivery, now, flood=delivery.kind != Delivery.Kind.SUMMARY)
    if counts.opted_out:
        return Hold.OPTED_OUT, "The recipient opted out of texts from this sender (Twilio 21610)."
    if delivery.kind == Delivery.Kind.SUMMARY:
        return "", ""
    duplicate_seconds, recipient_limit, org_limit = (
        settings.FLOOD_DUPLICATE_SECONDS,
        settings.FLOOD_RECIPIENT_LIMIT,
        settings.FLOOD_ORG_LIMIT,
    )
    if duplicate_seconds and counts.duplicates:
        return Hold.DUPLICATE, f"The same text went to this recipient less than {duplicate_seconds} s before."
    if recipient_limit and counts.to_recipient >= recipient_limit:
        return (
            Hold.RECIPIENT_LIMIT,
            f"{recipient_limit} texts to this recipient within {settings.FLOOD_WINDOW_SECONDS} s.",
        )
    if org_limit and counts.from_org >= org_limit:
        return Hold.ORG_LIMIT, f"{org_limit} texts from this organisation within {settings.FLOOD_WINDOW_SECONDS} s."
    return "", ""


@dataclass(frozen=True)
class Counts:
    opted_out: bool
    duplicates: int  # the same text to this recipient lately (a failed copy reached nobody: not counted)
    to_recipient: int  # texts to this recipient in the window
    from_org: int  # texts from the organisation in the window (counted only when that limit is on)


def _counts(delivery: Delivery, now: datetime, *, flood: bool) -> Counts:
    """The opt-out and the three flood counts, in one hand-written query (services.sql says why): the
    organisation's deliveries claimed since the earlier of the window and the duplicate interval,
    other than this one, read through the (organisation, [recipient,] claimed_at) indexes. Without
    `flood` (a summary) only the opt-out is looked up."""
    window = now - timedelta(seconds=settings.FLOOD_WINDOW_SECONDS)
    recent = now - timedelta(seconds=settings.FLOOD_DUPLICATE_SECONDS)
    recipient_only = not settings.FLOOD_ORG_LIMIT
    found = sql.row(
        f"""SELECT
              EXISTS (SELECT 1 FROM {sql.OPT_OUT} WHERE organization_id = %s AND sender = %s AND recipient = %s
                      AND cleared_at IS NULL),
              COUNT(*) FILTER (WHERE to_number = %s AND body = %s AND channel = %s AND claimed_at >= %s
                               AND status <> %s),
              COUNT(*) FILTER (WHERE to_number = %s AND claimed_at >= %s),
              COUNT(*) FILTER (WHERE claimed_at >= %s)
            FROM {sql.DELIVERY}
            WHERE {"TRUE" if flood else "FALSE"} AND organization_id = %s AND claimed_at >= %s AND id <> %s
              {"AND to_number = %s" if recipient_only else ""}""",
        [
            *(delivery.organization_id, delivery.from_number, delivery.to_number),
            # A call reads the alert out: it is not a repeat of the text it escalates.
            *(delivery.to_number, delivery.body, delivery.channel, sql.when(recent), Delivery.Status.FAILED),
            *(delivery.to_number, sql.when(window)),
            sql.when(window),
            *(delivery.organization_id, sql.when(min(window, recent)), sql.key(delivery.id)),
            *([delivery.to_number] if recipient_only else []),
        ],
    )
    assert found is not None  # an aggregate without GROUP BY always answers one row
    opted_out, duplicates, to_recipient, from_org = found
    return Counts(bool(opted_out), duplicates or 0, to_recipient or 0, from_org or 0)


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
        sql.row(f"SELECT id FROM {sql.CREDENTIAL} WHERE account_sid = %s ORDER BY id LIMIT 1 FOR UPDATE", [account])
    found = sql.row(
        f"SELECT COUNT(*) FROM {sql.DELIVERY} d JOIN {sql.CREDENTIAL} c ON c.id = d.credential_id "
        "WHERE d.status = %s AND c.account_sid = %s",
        [Delivery.Status.SENDING, account],
    )
    return bool(found and found[0] >= cap)
