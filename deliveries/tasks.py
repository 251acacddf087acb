"""Celery tasks: thin. Each fetches by id and calls one service, then schedules what it says."""

from __future__ import annotations

from celery import shared_task

from deliveries import services


def _follow_up(delivery_id: str, decision: services.SendDecision) -> str:
    if decision.retry_in is not None:
        send_delivery.apply_async((delivery_id, "retry"), countdown=decision.retry_in)
    if decision.reconcile_in is not None:
        reconcile_delivery.apply_async((delivery_id,), countdown=decision.reconcile_in)
    return decision.status


@shared_task(name="deliveries.send_delivery")
def send_delivery(delivery_id: str, trigger: str = "automatic") -> str:
    return _follow_up(delivery_id, services.delivery_send(delivery_id=delivery_id, trigger=trigger))


@shared_task(name="deliveries.reconcile_delivery")
def reconcile_delivery(delivery_id: str) -> str:
    return _follow_up(delivery_id, services.delivery_reconcile(delivery_id=delivery_id))


@shared_task(name="deliveries.sweep")
def sweep() -> str:
    return str(services.deliveries_sweep())
