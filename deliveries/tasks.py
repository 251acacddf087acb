"""Celery tasks: thin. Each fetches by id and calls one service."""

from __future__ import annotations

from celery import shared_task

from config import logcontext
from deliveries import metrics, services


@shared_task(name="deliveries.send_delivery")
def send_delivery(delivery_id: str, trigger: str = "automatic") -> str:
    # Every log line of this task, down to the gateway, carries the delivery id (and, once the service
    # has loaded the row, its organisation and idempotency key). The pool reuses threads: scope() resets.
    with logcontext.scope(delivery_id=delivery_id):
        decision = services.delivery_send(delivery_id=delivery_id, trigger=trigger)
        if decision.retry_in is not None:
            metrics.retry_scheduled()
            send_delivery.apply_async((delivery_id, "retry"), countdown=decision.retry_in)
    return decision.status
