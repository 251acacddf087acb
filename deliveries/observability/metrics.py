"""Every Prometheus metric of the service, defined in one place, and the one-line calls that record them.

Two kinds of figure:

* Events counted where they happen (intake calls, attempts, retries, Twilio latency). They live in the
  process that saw them. Under gunicorn with several workers, and with a Celery worker beside it, set
  `PROMETHEUS_MULTIPROC_DIR` to a folder shared by those processes (emptied at start, as `bin/run`
  does): prometheus_client then keeps the values in files there and `/metrics` sums them all.
* State (deliveries by status, the age of the oldest pending delivery, suppressions) is read from the
  database at scrape time, so it is right whichever process or machine changed it, and survives
  restarts. Those gauges are composed by config/state_metrics.py from deliveries.selectors, so this
  module imports nothing of the service and every room can use it.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.registry import REGISTRY, Collector

PREFIX = "ext_twilio"

INTAKE_CALLS = Counter(
    f"{PREFIX}_intake_calls",
    "Calls to POST /extension/ by LimaCharlie message type and outcome.",
    ["message_type", "outcome"],
)
ATTEMPTS = Counter(
    f"{PREFIX}_attempts",
    "Finished attempts to hand a delivery to Twilio, by outcome class (accepted, not_processed, permanent, ambiguous).",
    ["outcome"],
)
HELD_BACK = Counter(
    f"{PREFIX}_held_back",
    "Texts and calls held back instead of sent, by reason (a Delivery.Hold: opted_out, duplicate, recipient_limit, "
    "org_limit, recipient_calls, org_calls).",
    ["reason"],
)
RETRIES = Counter(f"{PREFIX}_send_retries", "Retries scheduled after Twilio did not process a message.")
TWILIO_LATENCY = Histogram(
    f"{PREFIX}_twilio_request_seconds",
    "Time one POST to Twilio's Messages API took, by outcome class.",
    ["outcome"],
    # Twilio answers in a few hundred ms; the tail up to TWILIO_TIMEOUT_SECONDS is what an operator hunts.
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0),
)


def intake_call(message_type: str, status: int) -> None:
    INTAKE_CALLS.labels(message_type=message_type, outcome=_intake_outcome(status)).inc()


def _intake_outcome(status: int) -> str:
    if status < 400:
        return "ok"
    if status == 401:
        return "unauthorized"
    if status == 413:
        return "too_large"
    return "refused" if status < 500 else "error"


def twilio_call(outcome: str, duration_ms: int) -> None:
    TWILIO_LATENCY.labels(outcome=outcome).observe(duration_ms / 1000)


def attempt_finished(outcome: str) -> None:
    ATTEMPTS.labels(outcome=outcome).inc()


def held_back(reason: str) -> None:
    HELD_BACK.labels(reason=reason).inc()


def retry_scheduled() -> None:
    RETRIES.inc()


def exposition(*state: Collector) -> bytes:
    """The text exposition of every metric: counted events (from all processes sharing
    PROMETHEUS_MULTIPROC_DIR, or from this process alone) followed by the `state` collectors, which
    read their gauges when scraped (config.views passes the database's)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        events = CollectorRegistry()
        multiprocess.MultiProcessCollector(events)
    else:
        events = REGISTRY
    gauges = CollectorRegistry(auto_describe=False)
    for collector in state:
        gauges.register(collector)
    return generate_latest(events) + generate_latest(gauges)


ACKNOWLEDGEMENTS = Counter(
    f"{PREFIX}_acknowledgements", "Alerts acknowledged, by channel (sms reply, voice keypress).", ["channel"]
)
TIME_TO_ACK = Histogram(
    f"{PREFIX}_time_to_acknowledge_seconds",
    "From accepting an alert to its acknowledgement, by channel.",
    ["channel"],
    # People acknowledge within seconds to tens of minutes; escalations are declared in minutes.
    buckets=(15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600),
)
ESCALATIONS = Counter(f"{PREFIX}_escalations", "Escalation steps taken, by kind (call, next).", ["kind"])


def acknowledged(channel: str, seconds: float) -> None:
    ACKNOWLEDGEMENTS.labels(channel=channel).inc()
    TIME_TO_ACK.labels(channel=channel).observe(max(0.0, seconds))


def escalated(kind: str) -> None:
    ESCALATIONS.labels(kind=kind).inc()


CODE_LOCKS = Counter(
    f"{PREFIX}_code_locks",
    "Code replies refused after too many wrong codes from one number: `locked` once when a number's lock "
    "begins, `refused` for each code reply refused while it lasts.",
    ["event"],
)
WEBHOOK_DUPLICATES = Counter(
    f"{PREFIX}_webhook_duplicates",
    "Twilio webhooks received again (a retry or a replay) and answered without acting, by kind.",
    ["kind"],
)
INBOUND_WITHHELD = Counter(
    f"{PREFIX}_inbound_answers_withheld",
    "Answers to inbound texts not sent, by reason (not_alerted, reply_limit).",
    ["reason"],
)
CALLS_REFUSED = Counter(
    f"{PREFIX}_calls_refused",
    "Escalation calls never placed because the number is not an ordinary phone or its country is not allowed.",
    ["reason"],
)


def code_lock(event: str) -> None:
    CODE_LOCKS.labels(event=event).inc()


def webhook_duplicate(kind: str) -> None:
    WEBHOOK_DUPLICATES.labels(kind=kind).inc()


def inbound_withheld(reason: str) -> None:
    INBOUND_WITHHELD.labels(reason=reason).inc()


def call_refused(reason: str) -> None:
    CALLS_REFUSED.labels(reason=reason).inc()
