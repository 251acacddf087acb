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
import os
import threading
from collections.abc import Sequence
from typing import Any

from celery import current_app
from kombu import Producer
from kombu.utils.uuid import uuid

from deliveries.models import Attempt

logger = logging.getLogger(__name__)
_local = threading.local()

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
            if countdown is None and not current_app.conf.task_always_eager:
                _publish(name, args, ignore_result=task.ignore_result)
            else:  # a delayed task (a retry, a look at Twilio, a timer), or the tests' tasks run in place
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


def _publish(name: str, args: tuple[object, ...], *, ignore_result: bool) -> None:
    """Send one task due now, as apply_async would, with Celery's own message and routing, on this
    thread's producer.

    Why not apply_async: it takes a producer from the app's shared pool for every message and looks
    up a dozen settings and the calling task on the way; every accepted alert goes through here. In
    one thread, 175 µs per message against 98 on the embedded broker, 230 against 155 on Redis
    (measured, issue 9). The message, its route, the publish retry policy and the publish signals are
    Celery's (create_task_message, send_task_message)."""
    app = current_app
    options = app.amqp.router.route({}, name, args, {})
    producer = _producer()
    message = app.amqp.create_task_message(
        uuid(), name, args, {}, ignore_result=ignore_result, argsrepr=repr(args), kwargsrepr="{}"
    )
    if _declared(producer, options.get("queue")):
        try:
            app.amqp.send_task_message(producer, name, message, **{**options, "declare": [], "retry": False})
            return
        except Exception:  # noqa: BLE001 - a lost connection, say: publish again as below, which reconnects
            pass
    app.amqp.send_task_message(producer, name, message, **options)


def _declared(producer: Any, queue: Any) -> bool:
    """Whether kombu has declared `queue` on this producer's connection already, by kombu's own test
    (kombu.common.maybe_declare). Why ask first: given a queue to declare, kombu copies it, binds the copy
    to the channel and wraps the declaration in its retry policy for every message, only to find it in
    this cache and do nothing. A publish's CPU in one thread and in four (measured for issue 9): on Redis
    235-245 and 375-405 µs with that, 170-190 and 300-305 without; on the embedded broker 140-150 and
    350, 94-96 and 250-265.

    Such a publish is tried once without the queue; if it fails, it is made again as Celery makes it
    (with the queue and the retry policy): a reconnection empties the cache, so the queue is declared on
    the new connection before the message is sent, as before. Should the failed try have reached the
    broker after all, the task runs twice, as after kombu's own retry: a send's claim lets only one run
    send."""
    declared = producer.connection.declared_entities
    return bool(queue is not None and queue.can_cache_declaration and declared and hash(queue) in declared)


def _producer() -> Any:
    """This thread's producer, on a broker connection of its own, kept for the thread's life (not taken
    from the app's pool: a worker's 32 threads holding one each would empty it, and the next would wait
    for good). kombu reconnects it when the broker comes back. A process forked from this one makes
    its own: a connection must not be shared across a fork."""
    producer = getattr(_local, "producer", None)
    if producer is None or _local.pid != os.getpid():
        producer = Producer(current_app.connection_for_write(), auto_declare=False)
        _local.producer, _local.pid = producer, os.getpid()
    return producer
