"""Smoke runs of the benchmarks, so that they cannot rot unnoticed: `make bench` (bench/run.py) on the
embedded defaults with a few alerts, without and with events for LimaCharlie, and the admin benchmark
(bench/admin_scale.py) in its quick mode, each run to its report. Speed is not checked here (a few alerts
measure start-up, not throughput); what reached the fake Twilio and the fake LimaCharlie's hook is.

`make bench`'s run starts `make run`'s bin/run in a VAR_DIR under the test's temporary folder and needs no
server; the admin benchmark needs this machine's PostgreSQL (a database of its own, named with this
process's id, dropped at the end).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench.e2e import recipient
from bench.report import EVENTS_HEADER, HEADER

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.bench_smoke


def _env(**extra: str) -> dict[str, str]:
    own = ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "VAR_DIR", "PROMETHEUS_MULTIPROC_DIR")
    env = {k: v for k, v in os.environ.items() if k not in own and not k.startswith(("BENCH_", "PYTEST_"))}
    return {**env, **extra}


@pytest.mark.timeout(150)
def test_make_bench_posts_every_alert_once_and_its_event_once_and_prints_its_tables_and_checks(tmp_path: Path) -> None:
    alerts = 24
    env = _env(BENCH_ALERTS=str(alerts), BENCH_BACKENDS="embedded", BENCH_VAR_DIR=str(tmp_path))
    run = subprocess.run(
        [sys.executable, "-m", "bench.run"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=140
    )
    # 1 is a REGRESSION line: with a few alerts, start-up costs weigh on the figures the checks compare.
    assert run.returncode in (0, 1), run.stdout[-3000:] + run.stderr[-3000:]

    expected = {recipient(i): 1 for i in range(alerts)}
    measured = {m["system"]: m for m in json.loads((tmp_path / "result.json").read_text())}
    assert set(measured) == {"baseline", "embedded", "embedded+events"}
    for system in measured.values():  # every alert accepted, and POSTed to the fake Twilio exactly once
        assert (system["accepted"], system["posts"]) == (alerts, expected), system["system"]
    assert measured["embedded"]["rate"] > 0 and measured["embedded"]["worker_cpu_ms"] > 0
    # The service took both status callbacks (sent, delivered) of every text, in both of its runs.
    assert measured["embedded"]["receipts"] == measured["embedded+events"]["receipts"] == 2 * alerts
    # With events on, each alert's `delivered` event reached the hook exactly once; none without them.
    with_events = measured["embedded+events"]
    assert (with_events["events_once"], with_events["hook_events"]) == (alerts, alerts)
    assert 1 <= with_events["hook_posts"] <= alerts
    assert measured["embedded"]["hook_events"] == 0

    assert "| " + " | ".join(HEADER) + " |" in run.stdout
    assert "| " + " | ".join(EVENTS_HEADER) + " |" in run.stdout
    assert run.stdout.count(f"| embedded | {alerts} | ") == 2
    assert f"OK: embedded: {alerts} of {alerts} alerts at Twilio exactly once" in run.stdout
    assert f"OK: embedded+events: {alerts} of {alerts} alerts at Twilio exactly once" in run.stdout
    assert f"OK: embedded+events: {alerts} of {alerts} alerts with their event at the hook exactly once" in run.stdout
    verdicts = [line.split(":")[0] for line in run.stdout.splitlines() if line.startswith(("OK:", "REGRESSION:"))]
    assert len(verdicts) == 6  # deliveries (twice), events, the 3x floor, CPU per message, events' nine tenths
    assert run.returncode == (1 if "REGRESSION" in verdicts else 0)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(not _listening(5432), reason="the admin benchmark needs PostgreSQL on 127.0.0.1")
@pytest.mark.timeout(180)
def test_the_admin_benchmark_seeds_from_the_models_and_reports(tmp_path: Path) -> None:
    env = _env(BENCH_DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/ext_twilio_bench_smoke_admin_{os.getpid()}")
    report = tmp_path / "admin.md"
    run = subprocess.run(
        [sys.executable, "bench/admin_scale.py", "--quick", "--report", str(report)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    text = report.read_text()
    assert "| request | 50 deliveries | 500 deliveries | ratio |" in text
    for page in ("list (newest first)", "search by number", "delivery page (timeline)", "admin index (at a glance)"):
        assert f"| {page}" in text, page
