"""Escalation, declared by the rule: `ack_within` (minutes to acknowledge) and `escalate`:
`call` rings the same recipient, `next` texts the next recipient of `to`.

Timers are Escalation rows and a Celery task with a countdown; the row is the truth, so a lost
task only delays a step until the sweeper finds the overdue row. No countdown is longer than half
the broker's visibility timeout (timer_hop_seconds): Redis puts back a task a worker has held longer
than that, so a 24-hour countdown would be delivered again every ten minutes. A task that comes
before its timer is due re-arms it from the row for the next hop. A timer fires at most once (a
conditional `waiting -> fired` under its row lock), and its step is a Delivery whose unique key
(organisation, idempotency key, recipient) makes a second call or text for one step impossible.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from deliveries.models import Delivery, Escalation
from deliveries.observability import metrics
from deliveries.services import calls, events, queue
from deliveries.services.codes import ack_code_new

logger = logging.getLogger(__name__)
Action = Escalation.Action
State = Escalation.State
BATCH = 1000
# A person's call timers due within this of each other ring one call, about at most CALL_MAX_ALERTS.
CALL_TOGETHER = timedelta(seconds=60)
CALL_MAX_ALERTS = 5


@dataclass(frozen=True)
class AckPlan:
    """What a `run` call asked for beyond the texts themselves."""

    codes: bool = True  # append "Reply CODE to acknowledge" (configuration: ack_by_reply)
    ack_within_seconds: int | None = None
    escalate: str = ""  # "", "call" or "next"
    notify_others: bool = False
    later: Sequence[str] = field(default_factory=tuple)  # `next`: the recipients after the first

    def split(self, recipients: Sequence[str]) -> tuple[list[str], list[str]]:
        """`next` texts the first recipient now and the rest one after another."""
        if self.escalate == Action.NEXT and self.ack_within_seconds:
            return list(recipients[:1]), list(recipients[1:])
        return list(recipients), []


def ack_fields(plan: AckPlan | None, *, organization_id: int, to: str) -> dict[str, object]:
    """The acknowledgement columns of a new alert text."""
    if plan is None or not plan.codes:
        return {"notify_on_ack": bool(plan and plan.notify_others)}
    return {
        "ack_code": ack_code_new(organization_id=organization_id, recipient=to),
        "notify_on_ack": plan.notify_others,
    }


def timers_planned(plan: AckPlan | None, later: Sequence[str]) -> bool:
    """Whether accepting these texts starts escalation timers (timers_plan)."""
    if plan is None or not plan.escalate or not plan.ack_within_seconds:
        return False
    return plan.escalate != Action.NEXT or bool(later)  # `next` with one recipient: nobody to escalate to


def timers_plan(*, alerts: Sequence[Delivery], plan: AckPlan | None, later: Sequence[str], now: datetime) -> list[str]:
    """One timer per alert text (`call`), or one for the first recipient (`next`, when there is a
    next one), in the caller's transaction; their countdown tasks are enqueued once it commits."""
    if not timers_planned(plan, later):
        return []
    assert plan is not None and plan.ack_within_seconds
    due = now + timedelta(seconds=plan.ack_within_seconds)
    timers = [
        Escalation(
            alert=alert,
            action=plan.escalate,
            ack_within_seconds=plan.ack_within_seconds,
            remaining=list(later) if plan.escalate == Action.NEXT else [],
            due_at=due,
            armed_until=_hop_end(now, due),
        )
        for alert in alerts
    ]
    Escalation.objects.bulk_create(timers)
    ids, wait = [str(t.id) for t in timers], plan.ack_within_seconds
    transaction.on_commit(lambda: timers_enqueue(ids, wait))
    return ids


def timer_hop_seconds() -> float:
    """The longest a timer's task waits in the broker: half the visibility timeout."""
    return settings.BROKER_VISIBILITY_TIMEOUT_SECONDS / 2


def _hop_end(now: datetime, due: datetime) -> datetime:
    """When the task armed now comes: at `due`, or after one hop if that is sooner."""
    return min(due, now + timedelta(seconds=timer_hop_seconds()))


def timers_enqueue(timer_ids: Sequence[str], seconds: float) -> int:
    """Arm these timers, due in `seconds`: their task comes then, or after one hop (the row's
    `armed_until`, set by whoever made or re-armed it) to arm them again."""
    return queue.escalate(timer_ids, countdown=min(max(0.0, seconds), timer_hop_seconds()))


def escalation_fire(*, timer_id: str) -> str:
    """The timer's moment: if the alert's run call was acknowledged, nothing; else its step."""
    now = timezone.now()
    with transaction.atomic():
        timer = Escalation.objects.select_for_update().filter(id=timer_id).first()
        if timer is None or timer.state != State.WAITING:
            return timer.state if timer else "missing"
        if timer.due_at > now + timedelta(seconds=1):
            _rearm(timer, now)
            return "early"
        alert = Delivery.objects.select_related("organization").get(id=timer.alert_id)
        acknowledged = (
            alert.alert_id is not None
            and Delivery.objects.filter(alert_id=alert.alert_id, acknowledged_at__isnull=False).exists()
        ) or alert.acknowledged_at is not None
        if acknowledged:
            timer.state, timer.fired_at = State.CANCELLED, now
            timer.save(update_fields=["state", "fired_at"])
            return timer.state
        step, follow = _call(alert, timer, now) if timer.action == Action.CALL else _next(alert, timer, now)
        timer.state, timer.fired_at, timer.result = State.FIRED, now, step
        timer.save(update_fields=["state", "fired_at", "result"])
        events.escalation_fired(alert=alert, step=step, action=timer.action)  # escalated, or unacknowledged
        ids = [str(step.id)] if step and step.status == Delivery.Status.PENDING else []
        transaction.on_commit(lambda: queue.send(ids))
        if follow:
            transaction.on_commit(lambda: timers_enqueue(follow, timer.ack_within_seconds))
    if step:
        metrics.escalated(timer.action)
    logger.info("escalation %s of delivery %s fired: %s", timer.action, alert.id, step.id if step else "end of list")
    return timer.state


def _rearm(timer: Escalation, now: datetime) -> None:
    """A task before its timer is due. At the end of a hop it arms the next one from the row; before
    that (a copy the broker put back, or a task run at once, as in eager tests) it does nothing, so a
    timer never has two chains of tasks."""
    if timer.armed_until is not None and now < timer.armed_until - timedelta(seconds=1):
        return
    timer.armed_until = _hop_end(now, timer.due_at)
    timer.save(update_fields=["armed_until"])
    left, timer_id = (timer.due_at - now).total_seconds(), str(timer.id)
    transaction.on_commit(lambda: timers_enqueue([timer_id], left))


def _step(alert: Delivery, now: datetime, **fields: object) -> Delivery | None:
    try:
        with transaction.atomic():  # a savepoint: the unique key refuses a second step
            values: dict[str, object] = {
                "organization_id": alert.organization_id,
                "alert_id": alert.alert_id,
                "idempotency_key": alert.idempotency_key,
                "credential_id": alert.credential_id,  # the alert's own account, like everything it causes
                "ident": alert.ident,
                "inv_id": alert.inv_id,
                "from_number": alert.from_number,
                "body": alert.body,
                "original_length": alert.original_length,
                "truncated": alert.truncated,
                "escalates": alert,
                "notify_on_ack": alert.notify_on_ack,
                "due_at": now,
            }
            return Delivery.objects.create(**(values | fields))
    except IntegrityError:
        logger.warning("escalation step for delivery %s exists already; not made twice", alert.id)
        return None


def _also_due(alert: Delivery, timer: Escalation, now: datetime) -> list[Escalation]:
    """The person's other alerts due a call now (or within CALL_TOGETHER): one call reads them all out
    rather than ringing them once an alert. A timer another worker holds is left to it."""
    others = Escalation.objects.filter(
        action=Action.CALL,
        state=State.WAITING,
        due_at__lte=now + CALL_TOGETHER,
        alert__organization_id=alert.organization_id,
        alert__to_number=alert.to_number,
        alert__acknowledged_at__isnull=True,
    ).exclude(id=timer.id)
    locked = others.select_for_update(skip_locked=True, of=("self",)).select_related("alert")
    return list(locked.order_by("due_at")[: CALL_MAX_ALERTS - 1])


def _read_out(alerts: Sequence[Delivery]) -> str:
    """What a call about several alerts says, each alert's text in its share of the time."""
    share = 560 // len(alerts)
    return " ".join(f"Alert {n}: {a.body[:share].rstrip()}." for n, a in enumerate(alerts, start=1))


def _call(alert: Delivery, timer: Escalation, now: datetime) -> tuple[Delivery | None, list[str]]:
    others = _also_due(alert, timer, now)
    fields: dict[str, object] = {"channel": Delivery.Channel.VOICE}
    if others:
        fields["body"] = _read_out([alert, *(t.alert for t in others)])
    hold, why = calls.call_hold(Delivery(to_number=alert.to_number, from_number=alert.from_number, **fields))
    if hold:  # never placed: recorded with its reason, as any step held back
        fields.update(status=Delivery.Status.SUPPRESSED, hold=hold, status_reason=why, settled_at=now, due_at=None)
        logger.warning("escalation call for delivery %s not placed: %s", alert.id, why)
    call = _step(
        alert,
        now,
        to_number=alert.to_number,
        encoding=Delivery.Encoding.GSM7,
        segments=0,
        **fields,
    )
    if call is not None and others:
        Escalation.objects.filter(id__in=[t.id for t in others]).update(state=State.FIRED, fired_at=now, result=call)
    return call, []


def _next(alert: Delivery, timer: Escalation, now: datetime) -> tuple[Delivery | None, list[str]]:
    remaining = list(timer.remaining)
    if not remaining:
        return None, []
    to = remaining.pop(0)
    text = _step(
        alert,
        now,
        to_number=to,
        encoding=alert.encoding,
        segments=alert.segments,
        ack_code=ack_code_new(organization_id=alert.organization_id, recipient=to) if alert.ack_code else "",
    )
    if text is None:
        return text, []
    due = now + timedelta(seconds=timer.ack_within_seconds)
    follow = Escalation.objects.create(
        alert=text,
        action=Action.NEXT,
        ack_within_seconds=timer.ack_within_seconds,
        remaining=remaining,
        due_at=due,
        armed_until=_hop_end(now, due),
    )
    return text, [str(follow.id)]


def timers_sweep(*, now: datetime) -> int:
    """Timers whose task was lost (broker down, worker gone): overdue by SWEEP_PENDING_SECONDS."""
    overdue = now - timedelta(seconds=settings.SWEEP_PENDING_SECONDS)
    ids = [
        str(i)
        for i in Escalation.objects.filter(state=State.WAITING, due_at__lt=overdue)
        .order_by("due_at")
        .values_list("id", flat=True)[:BATCH]
    ]
    return queue.escalate(ids) if ids else 0
