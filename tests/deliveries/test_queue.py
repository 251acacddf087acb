"""How work reaches Celery: through each task's apply_async, behind one broker-failure policy
(services/queue.py)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from kombu import Producer

from config.celery import app
from deliveries.services import queue


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every message handed to kombu, with everything it was given, and not sent anywhere."""
    seen: list[dict[str, Any]] = []

    def publish(self: Producer, body: Any, **kwargs: Any) -> None:
        seen.append({"body": body, **kwargs})

    monkeypatch.setattr(Producer, "publish", publish)
    app.conf.task_always_eager = False  # (the autouse eager_celery fixture sets it again for the next test)
    return seen


def test_a_send_due_now_is_published_with_its_delivery_and_trigger_as_text(published: list[dict[str, Any]]) -> None:
    delivery_id = str(uuid.uuid4())

    assert queue.send([delivery_id]) == 1

    (message,) = published
    assert message["body"][:2] == ((delivery_id, "automatic"), {})
    assert message["headers"]["task"] == queue.SEND_TASK
    assert message["headers"]["ignore_result"] is True
    assert message["headers"]["eta"] is None


def test_a_delayed_task_carries_its_eta(published: list[dict[str, Any]]) -> None:
    timer_id = str(uuid.uuid4())

    assert queue.escalate([timer_id], countdown=90) == 1

    (message,) = published
    assert message["body"][0] == (timer_id,)
    assert message["headers"]["task"] == queue.ESCALATE_TASK
    assert message["headers"]["eta"] is not None


def test_a_broker_that_refuses_loses_nothing_and_says_how_many_wait(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    attempts = []

    def refuse(self: Producer, body: Any, **kwargs: Any) -> None:
        attempts.append(body)
        raise OSError("connection refused")

    monkeypatch.setattr(Producer, "publish", refuse)
    app.conf.task_always_eager = False  # (the autouse eager_celery fixture sets it again for the next test)
    ids = [str(uuid.uuid4()) for _ in range(3)]

    with caplog.at_level(logging.WARNING, logger="deliveries.services.queue"):
        assert queue.send(ids) == 0

    assert len(attempts) >= 1 and all(body[0][0] == ids[0] for body in attempts)  # it stops at the first
    assert f"could not enqueue delivery {ids[0]} and 2 more" in caplog.text
    assert "the sweeper enqueues them" in caplog.text
