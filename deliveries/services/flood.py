"""Flood control, opt-outs and the per-account cap: whether a delivery must be held back instead of
sent, or wait its turn at its Twilio account.

Decisions made by the send claim (services.send) while it holds the organisation's row lock (and, for
the cap, its account's), so the counts are exact across any number of workers on any number of
machines: the database is the shared state, not process memory. Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection

from deliveries.models import Attempt, Delivery
from deliveries.services import sql

Hold = Delivery.Hold


def hold_for(delivery: Delivery, trigger: str, now: datetime) -> tuple[str, str, bool]:
    """(hold, human reason, account busy): a hold to record, or ("", "", busy) to send, once the Twilio
    account has room when it is busy. An operator's resend is a human decision and is never held back,
    though it waits its turn at a busy account too; a flood-control summary is not subject to the limits
    it reports on. One read gives all of it, after the account's lock when the cap is on, and brings the
    delivery's credential with it (sql.with_credential)."""
    capped = _account_locked(delivery)
    counts = _counts(delivery, now, capped=capped, held=trigger != Attempt.Trigger.RESEND)
    busy = capped and counts.in_flight >= settings.TWILIO_MAX_CONCURRENT_PER_ACCOUNT
    if trigger == Attempt.Trigger.RESEND:
        return "", "", busy
    if counts.opted_out:
        return Hold.OPTED_OUT, "The recipient opted out of texts from this sender (Twilio 21610).", busy
    if delivery.kind == Delivery.Kind.SUMMARY:
        return "", "", busy
    duplicate_seconds, recipient_limit, org_limit = (
        settings.FLOOD_DUPLICATE_SECONDS,
        settings.FLOOD_RECIPIENT_LIMIT,
        settings.FLOOD_ORG_LIMIT,
    )
    if duplicate_seconds and counts.duplicates:
        return Hold.DUPLICATE, f"The same text went to this recipient less than {duplicate_seconds} s before.", busy
    if recipient_limit and counts.to_recipient >= recipient_limit:
        return (
            Hold.RECIPIENT_LIMIT,
            f"{recipient_limit} texts to this recipient within {settings.FLOOD_WINDOW_SECONDS} s.",
            busy,
        )
    if org_limit and counts.from_org >= org_limit:
        return (
            Hold.ORG_LIMIT,
            f"{org_limit} texts from this organisation within {settings.FLOOD_WINDOW_SECONDS} s.",
            busy,
        )
    return "", "", busy


@dataclass(frozen=True)
class Counts:
    opted_out: bool
    duplicates: int  # the same text to this recipient lately (a failed copy reached nobody: not counted)
    to_recipient: int  # texts to this recipient in the window
    from_org: int  # texts from the organisation in the window (counted only when that limit is on)
    in_flight: int  # requests in flight on the delivery's Twilio account (counted only when the cap is on)


_ACCOUNT = f"SELECT account_sid FROM {sql.CREDENTIAL} WHERE id = %s"  # the account of a credential, by id


def _account_locked(delivery: Delivery) -> bool:
    """Whether the cap on requests in flight applies to the delivery's Twilio account; if so, locked.
    Organisations may share a Twilio account, and the claim holds only its own organisation's lock: the
    account's oldest credential row is locked too, so every claim on the account counts in turn. (SQLite
    has no row locks; its transactions already run one at a time.) Twilio answers 429 beyond its own
    concurrency cap: waiting our turn costs nothing, a 429 costs a retry."""
    if not settings.TWILIO_MAX_CONCURRENT_PER_ACCOUNT or delivery.credential_id is None:
        return False
    if connection.features.has_select_for_update:
        # A credential's account never changes (only its token is erased or renewed), so the account is
        # found from the delivery's credential id, read before this lock's wait as it would be after it.
        sql.row(
            f"SELECT id FROM {sql.CREDENTIAL} WHERE account_sid = ({_ACCOUNT}) ORDER BY id LIMIT 1 FOR UPDATE",
            [delivery.credential_id],
        )
    return True


def _counts(delivery: Delivery, now: datetime, *, capped: bool, held: bool) -> Counts:
    """The opt-out, the three flood counts and the account's requests in flight, in one hand-written
    query (services.sql says why; it is made after every lock it needs, since a statement reads what was
    committed when it started). Flood control counts the organisation's deliveries claimed since the
    earlier of the window and the duplicate interval, other than this one, through the (organisation,
    [recipient,] claimed_at) indexes. Not `held` (a resend) or a summary: no flood counts; not `held`: no
    opt-out either. Not `capped`: nothing in flight is counted. The delivery's credential comes with it."""
    window = now - timedelta(seconds=settings.FLOOD_WINDOW_SECONDS)
    recent = now - timedelta(seconds=settings.FLOOD_DUPLICATE_SECONDS)
    recipient_only = not settings.FLOOD_ORG_LIMIT
    flood = held and delivery.kind != Delivery.Kind.SUMMARY
    opt_out = (
        f"EXISTS (SELECT 1 FROM {sql.OPT_OUT} WHERE organization_id = %s AND sender = %s AND recipient = %s"
        " AND cleared_at IS NULL)"
    )
    in_flight = (
        f"(SELECT COUNT(*) FROM {sql.DELIVERY} s JOIN {sql.CREDENTIAL} c ON c.id = s.credential_id"
        f" WHERE s.status = %s AND c.account_sid = ({_ACCOUNT}))"
    )
    counting = (
        f"""SELECT
              {opt_out if held else "FALSE"} AS opted_out,
              COUNT(*) FILTER (WHERE to_number = %s AND body = %s AND channel = %s AND claimed_at >= %s
                               AND status <> %s) AS duplicates,
              COUNT(*) FILTER (WHERE to_number = %s AND claimed_at >= %s) AS to_recipient,
              COUNT(*) FILTER (WHERE claimed_at >= %s) AS from_org,
              {in_flight if capped else "0"} AS in_flight
            FROM {sql.DELIVERY}
            WHERE {"TRUE" if flood else "FALSE"} AND organization_id = %s AND claimed_at >= %s AND id <> %s
              {"AND to_number = %s" if recipient_only else ""}""",
        [
            *((delivery.organization_id, delivery.from_number, delivery.to_number) if held else ()),
            # A call reads the alert out: it is not a repeat of the text it escalates.
            *(delivery.to_number, delivery.body, delivery.channel, sql.when(recent), Delivery.Status.FAILED),
            *(delivery.to_number, sql.when(window)),
            sql.when(window),
            *((Delivery.Status.SENDING, delivery.credential_id) if capped else ()),
            *(delivery.organization_id, sql.when(min(window, recent)), sql.key(delivery.id)),
            *([delivery.to_number] if recipient_only else []),
        ],
    )
    opted_out, duplicates, to_recipient, from_org, in_flight_count = sql.with_credential(counting, delivery)
    return Counts(bool(opted_out), duplicates or 0, to_recipient or 0, from_org or 0, in_flight_count or 0)
