"""The only place that hands work to Celery.

The broker-failure policy, for every caller: the row is committed, in its state, with `due_at` set
*before* anything is enqueued (enqueue runs after commit). If the broker refuses, nothing is lost:
we log one warning, stop at the first failure (each further try could wait out a connect timeout
while LimaCharlie or an operator waits for our answer), and the sweeper enqueues the rest once
their `due_at` is overdue. Callers never handle a broker error themselves.

Tasks are looked up by name in the Celery app's registry (deliveries.apps registers them at start),
so the services never import the tasks module that calls them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from celery import current_app

from deliveries.models import Attempt

logger = logging.getLogger(__name__)

SEND_TASK = "deliveries.send_delivery"
RECONCILE_TASK = "deliveries.reconcile_delivery"
ESCALATE_TASK = "deliveries.escalate"
EVENTS_TASK = "deliveries.post_events"
APPROVAL_TIMEOUT_TASK = "deliveries.approval_timeout"


def send(
    delivery_ids: Sequence[str], *, trigger: str = Attempt.Trigger.AUTOMATIC, countdown: float | None = None
) -> int:
    """Enqueue a send task for each delivery; returns how many were enqueued. (An operator's resend
    needs nothing more: its operator and reason wait on the delivery row.)"""
    args = [(str(delivery_id), str(trigger)) for delivery_id in delivery_ids]  # plain text: readable in the message
    return _enqueue(SEND_TASK, args, countdown)


def reconcile(delivery_ids: Sequence[str], *, countdown: float | None = None) -> int:
    """Enqueue a reconcile task (look the message up at Twilio) for each delivery."""
    return _enqueue(RECONCILE_TASK, [(delivery_id,) for delivery_id in delivery_ids], countdown)


def escalate(timer_ids: Sequence[str], *, countdown: float | None = None) -> int:
    """Enqueue an escalation timer's task, due after `countdown` seconds (the row keeps its due_at)."""
    return _enqueue(ESCALATE_TASK, [(timer_id,) for timer_id in timer_ids], countdown)


def post_events(organization_ids: Sequence[int], *, countdown: float | None = None) -> int:
    """Enqueue the task that posts an organisation's waiting events to its LimaCharlie (services.events)."""
    return _enqueue(EVENTS_TASK, [(int(i),) for i in organization_ids], countdown)


def approval_timeout(approval_ids: Sequence[int], *, countdown: float | None = None) -> int:
    """Enqueue an approval's timeout, due after `countdown` seconds (the row keeps its due_at)."""
    return _enqueue(APPROVAL_TIMEOUT_TASK, [(int(i),) for i in approval_ids], countdown)


def _enqueue(name: str, calls: Sequence[tuple[object, ...]], countdown: float | None) -> int:
    task = current_app.tasks[name]
    for n, args in enumerate(calls):
        try:
            task.apply_async(args, countdown=countdown)
        except Exception as exc:  # noqa: BLE001 - kombu raises many types; the rows are safe either way
            logger.warning(
                "could not enqueue delivery %s and %d more (%s: %s); they stay due and the sweeper enqueues them",
                args[0],
                len(calls) - n - 1,
                name,
                type(exc).__name__,
            )
            return n
    return len(calls)
