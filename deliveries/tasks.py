"""Celery tasks: thin. Each fetches by id and calls one service."""

from __future__ import annotations

from celery import shared_task

from deliveries import services


@shared_task(name="deliveries.send_delivery")
def send_delivery(
    delivery_id: str, trigger: str = "automatic", triggered_by_id: int | None = None, reason: str = ""
) -> str:
    # A resend carries the operator and their reason; its retries (if any) are automatic again.
    decision = services.delivery_send(
        delivery_id=delivery_id, trigger=trigger, triggered_by_id=triggered_by_id, reason=reason
    )
    if decision.retry_in is not None:
        send_delivery.apply_async((delivery_id, "retry"), countdown=decision.retry_in)
    return decision.status
