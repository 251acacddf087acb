"""Faults on a whole running stack (gunicorn, a Celery worker with beat, its own Redis, a database):
every accepted request is delivered exactly once, whatever breaks in between.

Short runs here; `make chaos` runs the load scenario at 10,000 requests (CONTRIBUTING.md)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import Call, Caller, PostgresServer, RedisServer, Stack, new_calls, wait_until
from tests.conftest import Tenant
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.chaos


@pytest.fixture
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ext-twilio-chaos-") as folder:
        yield Path(folder)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def database_url(scratch: Path) -> Iterator[str]:
    """The backend of this test run: a database of its own on the run's PostgreSQL, or SQLite."""
    run_url = os.environ.get("DATABASE_URL", "")
    if not run_url.startswith("postgres"):
        yield f"sqlite:///{scratch / 'chaos.sqlite3'}"
        return
    name = f"ext_twilio_chaos_{uuid.uuid4().hex[:8]}"
    base = run_url.rsplit("/", 1)[0]
    subprocess.run(["psql", f"{base}/postgres", "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    yield f"{base}/{name}"
    subprocess.run(
        ["psql", f"{base}/postgres", "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
        check=False,
        capture_output=True,
    )


def _stack(database_url: str, broker_url: str, fake_twilio: FakeTwilio, fake_lc: Any, scratch: Path) -> Stack:
    return Stack(database_url, broker_url, fake_twilio.url, fake_lc.url, scratch)


def _caller(stack: Stack, tenant: Tenant) -> Caller:
    return Caller(stack.url, os.environ["LC_SHARED_SECRET"], tenant.oid, tenant.jwt, tenant.sender)


def _assert_exactly_once(calls: list[Call], fake_twilio: FakeTwilio, report: dict[str, Any]) -> None:
    accepted = [c for c in calls if c.accepted]
    refused = [c for c in calls if not c.accepted]
    # Each text ends with its acknowledgement code (on by default); the alert is the text before it.
    sent = Counter((m["to"], m["body"].split("\nReply ")[0]) for m in fake_twilio.messages)
    assert {(c.to, c.body): 1 for c in accepted} == {k: sent[k] for k in ((c.to, c.body) for c in accepted)}
    assert all(n == 1 for n in sent.values()), "a message was sent twice"
    assert not any(sent[(c.to, c.body)] for c in refused), "a refused request was sent"
    assert set(report["keys"]) == {c.key for c in accepted}
    assert report["status"] == {"queued": len(accepted)}


def test_redis_stopped_during_a_burst_then_started_delivers_every_accepted_request_exactly_once(
    tenant: Tenant, fake_twilio: FakeTwilio, fake_lc: Any, redis_server: RedisServer, database_url: str, scratch: Path
) -> None:
    with _stack(database_url, redis_server.url, fake_twilio, fake_lc, scratch) as stack:
        caller = _caller(stack, tenant)
        first = caller.burst(new_calls(30, 0))
        redis_server.stop()
        during = caller.burst(new_calls(30, 100))
        redis_server.start()
        after = caller.burst(new_calls(30, 200))
        calls = first + during + after

        assert all(c.accepted for c in calls), "the broker being down must not refuse requests"
        assert "could not enqueue delivery" in (scratch / "stack.log").read_text(), "the outage was not hit"
        report = wait_until(stack.settled, 120, "all deliveries settled", interval=1)
        _assert_exactly_once(calls, fake_twilio, report)


def test_postgres_restarted_during_a_burst_answers_500_retriable_and_loses_nothing(
    tenant: Tenant, fake_twilio: FakeTwilio, fake_lc: Any, redis_server: RedisServer, scratch: Path
) -> None:
    postgres = PostgresServer()
    postgres.start()
    stack = _stack(postgres.url, redis_server.url, fake_twilio, fake_lc, scratch)
    try:
        stack.start()
        caller = _caller(stack, tenant)
        caller.attempts = 1  # record each answer; the scenario retries what was refused, as LimaCharlie would
        calls: list[Call] = []

        def outage() -> None:
            time.sleep(1.0)
            postgres.stop()
            time.sleep(3.0)
            postgres.start()

        breaker = threading.Thread(target=outage)
        breaker.start()
        while breaker.is_alive() or len(calls) < 60:  # keep calling through the whole outage
            chunk = new_calls(5, len(calls))
            calls.extend(caller.burst(chunk, concurrency=5))
        breaker.join()
        outage_answers = [s for c in calls for s in c.statuses if s != 200]
        for call in calls:  # LimaCharlie's retries of what was refused, now that the database is back
            if not call.accepted:
                caller.attempts = 3
                caller.call(call)

        assert outage_answers, "the outage was not hit; the scenario proved nothing"
        assert set(outage_answers) <= {500}, f"unexpected answers during the outage: {set(outage_answers)}"
        assert all(c.accepted for c in calls)
        report = wait_until(stack.settled, 120, "all deliveries settled", interval=1)
        _assert_exactly_once(calls, fake_twilio, report)
    finally:
        stack.stop()
        postgres.destroy()


def run_load(tenant: Tenant, fake_twilio: FakeTwilio, stack: Stack, requests_count: int) -> dict[str, Any]:
    """`requests_count` requests, 5 % of them repeats of an earlier idempotency key, against a Twilio
    that randomly refuses, fails or half-fails; then texts to recipients who opted out. Returns the
    reconciliation table."""
    fake_twilio.chaos = {"429": 0.05, "500": 0.02, "create_then_500": 0.01, "21211": 0.01}
    opted_out = [f"+1501{n:07d}" for n in range(max(2, requests_count // 100))]
    fake_twilio.refuse.update(dict.fromkeys(opted_out, 21610))
    caller = _caller(stack, tenant)
    calls = new_calls(requests_count, 0, tag="load ")
    repeats = [Call(c.key, c.to, c.body) for c in calls[: requests_count // 20]]
    started = time.time()
    caller.burst(calls + repeats, concurrency=16)
    stop_words = [Call(str(uuid.uuid4()), n, f"stop {n}") for n in opted_out]
    caller.burst(stop_words)
    wait_until(stack.settled, 600, "load settled", interval=2)
    # Opted-out recipients are known now: texts to them are suppressed without calling Twilio.
    suppressed = [Call(str(uuid.uuid4()), n, f"after stop {n}") for n in opted_out]
    caller.burst(suppressed)
    report = wait_until(stack.settled, 120, "suppressions settled", interval=1)
    elapsed = time.time() - started

    sent = Counter((m["to"], m["body"].split("\nReply ")[0]) for m in fake_twilio.messages)
    status = report["status"]
    accepted = sum(1 for c in calls + stop_words + suppressed if c.accepted)
    table = {
        "requests": len(calls) + len(stop_words) + len(suppressed),
        "repeats (same idempotency key)": len(repeats),
        "repeats answered with the first reply": sum(
            1 for r, c in zip(repeats, calls, strict=False) if r.reply is not None and r.reply == c.reply
        ),
        "accepted deliveries": accepted,
        "accepted by Twilio": status.get("queued", 0),
        "failed (permanent)": status.get("failed", 0),
        "suppressed (held back)": status.get("suppressed", 0),
        "still in flight": sum(status.get(s, 0) for s in ("pending", "sending", "ambiguous")),
        "messages at Twilio": len(fake_twilio.messages),
        "duplicates sent": sum(n - 1 for n in sent.values() if n > 1),
        "attempts by outcome": report["attempts"],
        "seconds": round(elapsed, 1),
    }
    return table


def test_a_load_run_with_repeated_keys_and_random_twilio_failures_reconciles_exactly(
    tenant: Tenant, fake_twilio: FakeTwilio, fake_lc: Any, redis_server: RedisServer, database_url: str, scratch: Path
) -> None:
    with _stack(database_url, redis_server.url, fake_twilio, fake_lc, scratch) as stack:
        table = run_load(tenant, fake_twilio, stack, int(os.environ.get("CHAOS_REQUESTS", "300")))
    print(table)  # noqa: T201 - shown with -s and in `make chaos`

    assert table["accepted deliveries"] == table["requests"]
    assert table["repeats answered with the first reply"] == table["repeats (same idempotency key)"]
    assert table["accepted deliveries"] == (
        table["accepted by Twilio"] + table["failed (permanent)"] + table["suppressed (held back)"]
    )
    assert table["still in flight"] == 0 and table["duplicates sent"] == 0
    assert table["messages at Twilio"] == table["accepted by Twilio"]
    assert table["suppressed (held back)"] == max(2, int(os.environ.get("CHAOS_REQUESTS", "300")) // 100)
