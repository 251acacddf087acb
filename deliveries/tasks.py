"""Celery tasks: thin. Each fetches by id and calls one service, then schedules what it says."""

from __future__ import annotations

from celery import shared_task

from config import logcontext
from deliveries import metrics, services


def _follow_up(delivery_id: str, decision: services.SendDecision) -> str:
    if decision.retry_in is not None:
        metrics.retry_scheduled()
        send_delivery.apply_async((delivery_id, "retry"), countdown=decision.retry_in)
    if decision.reconcile_in is not None:
        reconcile_delivery.apply_async((delivery_id,), countdown=decision.reconcile_in)
    return decision.status


@shared_task(name="deliveries.send_delivery")
def send_delivery(
    delivery_id: str, trigger: str = "automatic", triggered_by_id: int | None = None, reason: str = ""
) -> str:
    # Every log line of the task, down to the gateway, carries the delivery id (and, once the service
    # has loaded the row, its organisation and idempotency key). The pool reuses threads: scope() resets.
    # A resend carries the operator and their reason; its retries (if any) are automatic again.
    with logcontext.scope(delivery_id=delivery_id):
        decision = services.delivery_send(
            delivery_id=delivery_id, trigger=trigger, triggered_by_id=triggered_by_id, reason=reason
        )
        return _follow_up(delivery_id, decision)


@shared_task(name="deliveries.reconcile_delivery")
def reconcile_delivery(delivery_id: str) -> str:
    with logcontext.scope(delivery_id=delivery_id):
        return _follow_up(delivery_id, services.delivery_reconcile(delivery_id=delivery_id))


@shared_task(name="deliveries.sweep")
def sweep() -> str:
    return str(services.deliveries_sweep())
