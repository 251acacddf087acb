"""Celery tasks: thin. Each binds the log context, calls one service, and lets the service schedule
what it decided. Registered by name (deliveries.services.queue enqueues them by that name)."""

from __future__ import annotations

from celery import shared_task

from deliveries import services
from deliveries.observability import logcontext
from deliveries.services.queue import APPROVAL_TIMEOUT_TASK, ESCALATE_TASK, EVENTS_TASK, RECONCILE_TASK, SEND_TASK


@shared_task(name=SEND_TASK)
def send_delivery(
    delivery_id: str, trigger: str = "automatic", triggered_by_id: int | None = None, reason: str = ""
) -> str:
    # Every log line of the task, down to the Twilio client, carries the delivery id (and, once the
    # service has loaded the row, its organisation and idempotency key). The pool reuses threads:
    # scope() resets. A resend carries the operator and their reason; its retries are automatic.
    with logcontext.scope(delivery_id=delivery_id):
        decision = services.delivery_send(
            delivery_id=delivery_id, trigger=trigger, triggered_by_id=triggered_by_id, reason=reason
        )
        return services.follow_up(delivery_id=delivery_id, decision=decision)


@shared_task(name=RECONCILE_TASK)
def reconcile_delivery(delivery_id: str) -> str:
    with logcontext.scope(delivery_id=delivery_id):
        decision = services.delivery_reconcile(delivery_id=delivery_id)
        return services.follow_up(delivery_id=delivery_id, decision=decision)


@shared_task(name="deliveries.sweep")
def sweep() -> str:
    return str(services.deliveries_sweep())


@shared_task(name=ESCALATE_TASK)
def escalate(timer_id: str) -> str:
    # An escalation timer's countdown ran out (or the sweeper found it overdue): the service decides.
    return services.escalation_fire(timer_id=timer_id)


@shared_task(name=EVENTS_TASK)
def post_events(organization_id: int) -> str:
    # One organisation's waiting events for its LimaCharlie, in one POST; the service says when again.
    again_in = services.events_post(organization_id=organization_id)
    services.events_follow_up(organization_id=organization_id, again_in=again_in)
    return "done" if again_in is None else f"again in {again_in:.0f} s"


@shared_task(name=APPROVAL_TIMEOUT_TASK)
def approval_timeout(approval_id: int) -> str:
    # An approval's timeout ran out (or the sweeper found it overdue): its choice wins unless answered.
    return services.approval_timeout(approval_id=approval_id)
