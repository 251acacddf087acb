"""Events for the organisation's LimaCharlie: every outcome of an alert (delivered, undelivered,
failed, acknowledged, escalated, unacknowledged, approved, denied) as one JSON event posted to the
extension's webhook adapter, where a D&R rule can match it.

An outbox: `record` writes the event in the caller's transaction (the one that records the outcome)
and enqueues the organisation's post once it commits; `events_post` claims every waiting event of one
organisation, POSTs them as one list, and marks them sent, or due again after a backoff. LimaCharlie
down loses nothing, and a claimed event is never posted by a second task; the sweeper re-enqueues
organisations whose task was lost."""

from __future__ import annotations

import logging
import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from deliveries import lchook
from deliveries import status as statuses
from deliveries.models import AlertRequest, Approval, Delivery, Escalation, OutboundEvent, WebhookAdapter
from deliveries.services import queue
from deliveries.twilio.errors import meaning

logger = logging.getLogger(__name__)
Kind = OutboundEvent.Kind
Status = Delivery.Status
KINDS = tuple(k.value for k in Kind)
DEFAULT_KINDS = tuple(k for k in KINDS if k != Kind.DELIVERED)
SOURCE = "ext-twilio"
BATCH_SECONDS = 1.0  # how long the first event of a quiet organisation waits for others to go with it
ESCALATION_KINDS = frozenset({Kind.ACKNOWLEDGED, Kind.ESCALATED, Kind.UNACKNOWLEDGED})


def record(kind: str, *, delivery: Delivery | None = None, alert: AlertRequest | None = None, **details: Any) -> bool:
    """Write one event about the alert of `delivery` (or `alert`), in the caller's transaction, if the
    organisation's configuration chose its kind. False when nothing was written (a flood summary or a
    notice has no alert events; a kind not chosen)."""
    if delivery is not None and delivery.kind != Delivery.Kind.ALERT:
        return False
    alert_id = alert.pk if alert is not None else (delivery.alert_id if delivery is not None else None)
    if alert_id is None:
        return False
    if alert is None:
        alert = AlertRequest.objects.get(pk=alert_id)
    if kind not in (DEFAULT_KINDS if alert.event_kinds is None else alert.event_kinds):
        return False
    if kind in ESCALATION_KINDS and Approval.objects.filter(alert_id=alert.pk).exists():
        return False  # an approval's outcome is its decision (approved or denied), however it was reached
    now = timezone.now()
    event_id = uuid.uuid4()
    payload = {
        "source": SOURCE,
        "event_id": str(event_id),
        "kind": kind,
        "time": now.isoformat().replace("+00:00", "Z"),
        "alert_id": alert.pk,
        "idempotency_key": alert.idempotency_key,
        "ident": delivery.ident if delivery is not None else _ident(alert),
        **_recipient(delivery),
        **details,
        "context": alert.context,
    }
    OutboundEvent.objects.create(
        organization_id=alert.organization_id, alert=alert, kind=kind, event_id=event_id, payload=payload, due_at=now
    )
    # A moment's wait lets a storm of outcomes go in one POST: the first task to run posts every event of
    # the organisation that is waiting, and the others find nothing left to post.
    organization_id = alert.organization_id
    transaction.on_commit(lambda: queue.post_events([organization_id], countdown=BATCH_SECONDS))
    return True


def _ident(alert: AlertRequest) -> str:
    return alert.deliveries.values_list("ident", flat=True).first() or ""


def _recipient(delivery: Delivery | None) -> dict[str, Any]:
    if delivery is None:
        return {"recipient": ""}
    found: dict[str, Any] = {
        "recipient": delivery.to_number,
        "channel": delivery.channel,
        "delivery_id": str(delivery.id),
    }
    if delivery.error_code is not None:
        found.update(error_code=delivery.error_code, error_meaning=meaning(delivery.error_code))
    return found


def delivery_settled(delivery: Delivery) -> None:
    """A delivery reached a final status (a receipt, or a failed send): a text's delivered, undelivered
    or failed; a call's failure; and when it was the alert's last hope, unacknowledged. `delivery` is
    as its caller just read it, its alert too (a status callback reads them together)."""
    if delivery.status not in statuses.FINAL or delivery.status == Status.SUPPRESSED:
        return
    if delivery.channel == Delivery.Channel.SMS or delivery.status == Status.FAILED:
        record(delivery.status, delivery=delivery, alert=delivery.alert, error_message=delivery.error_message[:300])
    if delivery.escalates_id is not None and delivery.channel == Delivery.Channel.VOICE:
        alert_unacknowledged(delivery=delivery)


def alert_unacknowledged(*, delivery: Delivery) -> bool:
    """The escalation of `delivery`'s alert ran out and nobody acknowledged: no timer waits, no step is
    still under way. Recorded once per alert, under the alert's row lock."""
    if delivery.alert_id is None:
        return False
    with transaction.atomic():
        alert = AlertRequest.objects.select_for_update().get(pk=delivery.alert_id)
        everything = Delivery.objects.filter(alert=alert, kind=Delivery.Kind.ALERT)
        if (
            everything.filter(acknowledged_at__isnull=False).exists()
            or Escalation.objects.filter(alert__in=everything, state=Escalation.State.WAITING).exists()
            or everything.filter(channel=Delivery.Channel.VOICE).exclude(status__in=statuses.FINAL).exists()
            or alert.outbound_events.filter(kind=Kind.UNACKNOWLEDGED).exists()
        ):
            return False
        tried = sorted(set(everything.values_list("to_number", flat=True)))
        return record(Kind.UNACKNOWLEDGED, alert=alert, tried=tried)


def acknowledgement(delivery: Delivery, by: str, channel: str, now: datetime) -> dict[str, Any]:
    """What an `acknowledged` event adds: who, by which channel, after how long."""
    return {
        "acknowledged_by": by,
        "acknowledged_channel": channel,
        "seconds_to_acknowledge": round((now - delivery.created_at).total_seconds()),
    }


def escalation_fired(*, alert: Delivery, step: Delivery | None, action: str) -> None:
    """A timer fired: its step (a call placed, the next person texted) is `escalated`; a `next` that
    ran out of people, or a call held back (never placed), may leave the alert `unacknowledged`."""
    if step is not None and step.status != Delivery.Status.SUPPRESSED:
        record(Kind.ESCALATED, delivery=step, action=action, escalated_from=alert.to_number)
    else:
        alert_unacknowledged(delivery=alert)


# --- posting -------------------------------------------------------------------------------------------


def events_post(*, organization_id: int) -> float | None:
    """Post the organisation's waiting events, oldest first, as one list. Returns when to try again
    (seconds): after a failure (backoff), at once when more are waiting, or None."""
    now = timezone.now()
    adapter = WebhookAdapter.objects.select_related("organization").filter(organization_id=organization_id).first()
    if adapter is None or not adapter.usable:
        # Nowhere to post yet: they wait; making the adapter posts them (services.adapters).
        _waiting(organization_id, now).update(due_at=now + timedelta(seconds=settings.LC_HOOK_RETRY_MAX_SECONDS))
        return None
    claim = uuid.uuid4()
    ids = list(
        _waiting(organization_id, now).order_by("created_at").values_list("id", flat=True)[: settings.LC_HOOK_BATCH]
    )
    if not ids or not _waiting(organization_id, now).filter(id__in=ids).update(claim=claim, claimed_at=now):
        return None
    rows = list(OutboundEvent.objects.filter(claim=claim, sent_at__isnull=True).order_by("created_at", "id"))
    base = settings.LC_HOOK_BASE_URL or adapter.hooks_url
    url = lchook.hook_url(base=base, oid=adapter.organization.oid, adapter=lchook.ADAPTER_NAME)
    result = lchook.post_events(url=url, secret=adapter.secret, events=[r.payload for r in rows])
    mine = OutboundEvent.objects.filter(claim=claim)
    if result.ok:
        mine.update(sent_at=timezone.now(), due_at=None, claim=None, attempts=F("attempts") + 1, last_error="")
        logger.info("posted %d events to the LimaCharlie hook of org %s", len(rows), adapter.organization.oid)
        return 0.0 if _waiting(organization_id, timezone.now()).exists() else None
    delay = retry_delay(max(r.attempts for r in rows) + 1)
    mine.update(
        claim=None,
        claimed_at=None,
        attempts=F("attempts") + 1,
        last_error=result.error[:255],
        due_at=now + timedelta(seconds=delay),
    )
    logger.warning(
        "could not post %d events to the LimaCharlie hook of org %s: %s; again in %.0f s",
        len(rows),
        adapter.organization.oid,
        result.error,
        delay,
    )
    return delay


def _waiting(organization_id: int, now: datetime) -> Any:
    """Unsent, due, and not held by a live claim (a claim older than SWEEP_STUCK_SECONDS is a dead task's)."""
    stale = now - timedelta(seconds=settings.SWEEP_STUCK_SECONDS)
    return OutboundEvent.objects.filter(organization_id=organization_id, sent_at__isnull=True, due_at__lte=now).filter(
        Q(claimed_at__isnull=True) | Q(claimed_at__lt=stale)
    )


def retry_delay(attempts: int) -> float:
    """Exponential backoff with ±20 % jitter, capped: LimaCharlie coming back is not met by a stampede."""
    base = min(settings.LC_HOOK_RETRY_MAX_SECONDS, settings.LC_HOOK_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return base * random.uniform(0.8, 1.2)


def events_follow_up(*, organization_id: int, again_in: float | None) -> None:
    if again_in is not None:
        queue.post_events([organization_id], countdown=again_in or None)


def events_sweep(*, now: datetime) -> int:
    """Organisations with events overdue by SWEEP_PENDING_SECONDS (their task was lost): enqueued again."""
    overdue = now - timedelta(seconds=settings.SWEEP_PENDING_SECONDS)
    late = OutboundEvent.objects.filter(sent_at__isnull=True, due_at__lt=overdue)
    organizations = list(late.order_by().values_list("organization_id", flat=True).distinct()[:1000])
    if not organizations:
        return 0
    late.filter(organization_id__in=organizations).update(due_at=now)
    return queue.post_events(organizations)
