"""Escalation timers never outlive the broker: on Redis, a task a worker has held longer than the
visibility timeout is put back and delivered again, so a long countdown was delivered many times.
Here a real worker runs on Redis with a 4-second visibility timeout, and a 14-second timer is armed in
hops of at most 2 seconds (half of it): no task is ever held long enough to be put back, and the
timer's step happens once, when it is due. Redis: CELERY_BROKER_URL when it is Redis, else
redis://127.0.0.1:6379/10 (a database of its own, flushed by this test)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.utils import timezone

from deliveries.models import Delivery, Escalation
from tests.conftest import ROOT, Tenant, Worker, make_delivery, wait_for
from tests.fakes.twilio import FakeTwilio

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
_BROKER = os.environ.get("CELERY_BROKER_URL", "")
REDIS_URL = _BROKER if _BROKER.startswith("redis://") else "redis://127.0.0.1:6379/10"
VISIBILITY = 4
SECOND = "+15005550002"


@pytest.fixture
def redis_worker(celery_worker_process: Worker) -> Iterator[Worker]:
    """A worker on Redis with a short visibility timeout, in place of the session's worker (restarted by
    the next test that asks for it)."""
    celery_worker_process.stop()
    redis.Redis.from_url(REDIS_URL).flushdb()
    env = {
        **celery_worker_process.env,
        "CELERY_BROKER_URL": REDIS_URL,
        "BROKER_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY),
    }
    worker = Worker(env)
    worker.start()
    yield worker
    worker.stop()
    redis.Redis.from_url(REDIS_URL).flushdb()


def _arm(env: dict[str, str], timer_id: str, seconds: float) -> None:
    """Arm the timer as the intake does after its commit (escalate.timers_enqueue), in a process whose
    broker is that Redis."""
    code = (
        "import django; django.setup(); from deliveries.services.escalate import timers_enqueue; "
        f"assert timers_enqueue([{timer_id!r}], {seconds}) == 1"
    )
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True, timeout=60, capture_output=True)


def test_a_timer_longer_than_the_visibility_timeout_is_never_put_back_and_fires_once(
    redis_worker: Worker, tenant: Tenant, fake_twilio: FakeTwilio, settings: Any
) -> None:
    now = timezone.now()
    alert = make_delivery(tenant, status="queued", ack_code="K7QM")
    due = now + timedelta(seconds=14)
    timer = Escalation.objects.create(
        alert=alert, action="next", ack_within_seconds=14, remaining=[SECOND], due_at=due, armed_until=now
    )
    server = redis.Redis.from_url(REDIS_URL)

    _arm(redis_worker.env, str(timer.id), 14)

    held_longest = 0.0

    def step_sent() -> bool:
        nonlocal held_longest
        # When the worker took each message it holds (kombu's unacked index): how long it has held it.
        entries: list[tuple[bytes, float]] = server.zrange("unacked_index", 0, -1, withscores=True)  # type: ignore[assignment]
        taken = [score for _, score in entries]
        held_longest = max([held_longest, *(time.time() - t for t in taken)])
        return Delivery.objects.filter(to_number=SECOND, status="queued").exists()

    wait_for(step_sent, timeout=45, interval=0.2)
    timer.refresh_from_db()
    step = Delivery.objects.get(to_number=SECOND)

    assert held_longest < VISIBILITY, f"a task was held {held_longest:.1f} s: Redis would put it back"
    assert (timer.state, timer.result_id) == ("fired", step.id)
    assert timer.fired_at is not None and timer.fired_at >= due - timedelta(seconds=1)
    assert [p["To"] for p in fake_twilio.message_posts()] == [SECOND]
