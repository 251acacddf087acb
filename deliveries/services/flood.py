"""Flood control, opt-outs and the per-account cap: whether a delivery must be held back instead of
sent, or wait its turn at its Twilio account.

Decisions made by the send claim (services.send) while it holds the organisation's row lock (and, for
the cap, its account's), so the counts are exact across any number of workers on any number of
machines: the database is the shared state, not process memory. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection

from deliveries.models import Attempt, Delivery
from deliveries.services import sql

Hold = Delivery.Hold


def hold_for(delivery: Delivery, trigger: str, now: datetime) -> tuple[str, str, bool]:
    """(hold, human reason, account busy): a hold to record, or ("", "", busy) to send, once the Twilio
    account has room when it is busy. One read gives all of it, after the account's lock when the cap is
    on, and brings the delivery's credential with it (sql.with_credential)."""
    capped = _account_locked(delivery)
    counting = counts_statement(delivery.id, now, capped=capped, held=trigger != Attempt.Trigger.RESEND)
    return decide(delivery, trigger, Counts.of(sql.with_credential(counting, delivery)), capped=capped)


def decide(delivery: Delivery, trigger: str, counts: Counts, *, capped: bool) -> tuple[str, str, bool]:
    """The rules, on counts read under the locks: what hold_for answers. An operator's resend is a
    human decision and is never held back, though it waits its turn at a busy account too; a
    flood-control summary is not subject to the limits it reports on. `sends_at_once` is their twin in
    SQL, for the claim that decides in its own statement (services.send)."""
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


def sends_at_once(*, capped: bool) -> sql.Statement:
    """A condition, on the row of a WITH's `counts` (counts_clauses), that holds exactly when `decide`
    sends an alert or a notice now, for a send or a retry: nothing to hold it back for, and room at its
    account when `capped`. tests/deliveries/test_flood_and_opt_outs.py checks the two agree at every limit."""
    terms, params = ["NOT opted_out"], []
    if settings.FLOOD_DUPLICATE_SECONDS:
        terms.append("duplicates = 0")
    limits = [
        ("to_recipient", settings.FLOOD_RECIPIENT_LIMIT),
        ("from_org", settings.FLOOD_ORG_LIMIT),
        ("in_flight", settings.TWILIO_MAX_CONCURRENT_PER_ACCOUNT if capped else 0),
    ]
    for column, limit in limits:
        if limit:
            terms.append(f"{column} < %s")
            params.append(limit)
    return f"(SELECT {' AND '.join(terms)} FROM counts)", params


@dataclass(frozen=True)
class Counts:
    opted_out: bool
    duplicates: int  # the same text to this recipient lately (a failed copy reached nobody: not counted)
    to_recipient: int  # texts to this recipient in the window
    from_org: int  # texts from the organisation in the window (counted only when that limit is on)
    in_flight: int  # requests in flight on the delivery's Twilio account (counted only when the cap is on)

    @classmethod
    def of(cls, found: Sequence[Any]) -> Counts:
        """From the first five columns of a row of `counts`."""
        opted_out, duplicates, to_recipient, from_org, in_flight = found[:5]
        return cls(bool(opted_out), duplicates or 0, to_recipient or 0, from_org or 0, in_flight or 0)


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
        sql.row(account_lock("%s"), [delivery.credential_id])
    return True


def account_lock(credential_id: str) -> str:
    """The statement that locks the account's oldest credential row, given SQL for the credential's id."""
    account = _ACCOUNT.replace("%s", credential_id)
    return f"SELECT id FROM {sql.CREDENTIAL} WHERE account_sid = ({account}) ORDER BY id LIMIT 1 FOR NO KEY UPDATE"


def counts_statement(delivery_id: Any, now: datetime, *, capped: bool, held: bool) -> sql.Statement:
    """The opt-out, the three flood counts and the account's requests in flight: one query, written by
    hand (services.sql says why), answering one row of the Counts' columns. It reads the delivery it counts
    for (`me`) from the table, so the claim that decides in its own statement (services.send) can run it
    before it has the row in hand; made after every lock it needs, since a statement reads what was
    committed when it started. Flood control counts the organisation's deliveries claimed since the
    earlier of the window and the duplicate interval, other than this one, through the (organisation,
    [recipient,] claimed_at) indexes. Not `held` (a resend) or a summary: no flood counts; not `held`: no
    opt-out either. Not `capped`: nothing in flight is counted."""
    return f"WITH {counts_clauses(capped=capped, held=held)} SELECT * FROM counts", counts_params(delivery_id, now)


def counts_clauses(*, capped: bool, held: bool) -> str:
    """`me` and `counts`, as clauses of a WITH (counts_statement). The deliveries counted are joined to
    `me` and found through the (organisation, [recipient,] claimed_at) indexes, also in the plan PostgreSQL
    makes once for a prepared statement (Delivery.organization says why no index holds it alone)."""
    opt_out = (
        f"EXISTS (SELECT 1 FROM {sql.OPT_OUT} x WHERE x.organization_id = me.organization_id"
        " AND x.sender = me.from_number AND x.recipient = me.to_number AND x.cleared_at IS NULL)"
    )
    in_flight = (
        f"(SELECT COUNT(*) FROM {sql.DELIVERY} s JOIN {sql.CREDENTIAL} c ON c.id = s.credential_id"
        f" WHERE s.status = {sql.literal(Delivery.Status.SENDING)}"
        f" AND c.account_sid = ({_ACCOUNT.replace('%s', 'me.credential_id')}))"
    )
    recipient_only = not settings.FLOOD_ORG_LIMIT
    failed, summary = sql.literal(Delivery.Status.FAILED), sql.literal(Delivery.Kind.SUMMARY)
    return f"""me AS (
          SELECT id, organization_id, credential_id, from_number, to_number, body, channel, kind
          FROM {sql.DELIVERY} WHERE id = %s
        ), counts AS (
          SELECT
            {opt_out if held else "FALSE"} AS opted_out,
            -- A call reads the alert out: it is not a repeat of the text it escalates. A failed copy
            -- reached nobody: not a repeat either.
            COUNT(d.id) FILTER (WHERE d.to_number = me.to_number AND d.body = me.body AND d.channel = me.channel
                                AND d.claimed_at >= %s AND d.status <> {failed}) AS duplicates,
            COUNT(d.id) FILTER (WHERE d.to_number = me.to_number AND d.claimed_at >= %s) AS to_recipient,
            COUNT(d.id) FILTER (WHERE d.claimed_at >= %s) AS from_org,
            {in_flight if capped else "0"} AS in_flight
          FROM me LEFT JOIN {sql.DELIVERY} d
            ON {"TRUE" if held else "FALSE"} AND me.kind <> {summary} AND d.organization_id = me.organization_id
            AND d.claimed_at >= %s AND d.id <> me.id {"AND d.to_number = me.to_number" if recipient_only else ""}
          GROUP BY me.id, me.organization_id, me.credential_id, me.from_number, me.to_number
        )"""


def counts_params(delivery_id: Any, now: datetime) -> list[Any]:
    """The parameters of counts_clauses, in order (statuses and kinds are written in it: sql.literal)."""
    window = now - timedelta(seconds=settings.FLOOD_WINDOW_SECONDS)
    recent = now - timedelta(seconds=settings.FLOOD_DUPLICATE_SECONDS)
    return [sql.key(delivery_id), sql.when(recent), sql.when(window), sql.when(window), sql.when(min(window, recent))]
