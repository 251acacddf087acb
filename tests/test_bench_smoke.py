"""Smoke runs of the benchmarks, so that they cannot rot unnoticed: `make bench` (bench/run.py) and the
admin benchmark (bench/admin_scale.py) in their tiny modes, run to the end, and their reports have every
section. No figure is checked: speed lives in `make bench`, on a quiet machine, not in the tests.

Each uses databases of its own (named with this process's id, dropped at the end), never the test
database, and bench/run.py a redis-server of its own on a free port, so two test runs at once do not
meet; bench/run.py's end-to-end scenario starts `make run`'s bin/run on the embedded defaults in a
temporary VAR_DIR. They need this machine's PostgreSQL and Redis (CI starts both for either backend),
and are skipped, saying so, where those are not running.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.bench_smoke


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _env(**extra: str) -> dict[str, str]:
    own = ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "VAR_DIR", "PROMETHEUS_MULTIPROC_DIR")
    env = {k: v for k, v in os.environ.items() if k not in own and not k.startswith(("BENCH_", "PYTEST_"))}
    return {**env, **extra}


needs_servers = pytest.mark.skipif(
    not (_listening(5432) and _listening(6379)), reason="the benchmarks need PostgreSQL and Redis on 127.0.0.1"
)


@needs_servers
@pytest.mark.timeout(300)
def test_make_bench_runs_every_scenario_to_its_report(tmp_path: Path) -> None:
    env = _env(
        BENCH_SMOKE="1",
        # The end-to-end scenario on the embedded defaults stands for both backends here (PostgreSQL's
        # path is the classic phase's), and the skeleton on the embedded broker for both of its; the full
        # run has all four.
        BENCH_SCENARIOS="baseline,skeleton-embedded,e2e-embedded,classic",
        BENCH_RESULTS=str(tmp_path / "results"),
        BENCH_VAR_DIR=str(tmp_path / "var"),
        BENCH_DATABASE_NAME=f"ext_twilio_bench_smoke_{os.getpid()}",
        BENCH_OWN_REDIS="1",
    )
    run = subprocess.run(
        [sys.executable, "-m", "bench.run"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=280
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    report = (tmp_path / "results" / "latest-smoke.md").read_text()
    for section in (
        "| baseline (synchronous: lcextension, gunicorn 4 workers) |",
        "| `make run`, embedded defaults |",
        "| skeleton: `make run`'s processes, embedded broker, nothing of the service's |",
        "The service against its skeleton on the same broker (service ÷ skeleton):",
        "| goal (issue 9), per backend |",
        "| system | machine | web | worker | load generator | fakes | PostgreSQL | Redis | other |",
        "| Intake (`run`, signed + gzipped) |",
        "| Delivery (accepted → received by fake Twilio) |",
        "| Cost per process kind |",
        "- Worker CPU per message:",
        "- Intake CPU per call:",
    ):
        assert section in report, section
    result = json.loads((tmp_path / "results" / "latest-smoke.json").read_text())
    assert {s["backend"] for s in result["end_to_end"]} == {"none", "skeleton, embedded broker", "embedded"}
    skeleton = next(s for s in result["end_to_end"] if s["kind"] == "skeleton")
    assert skeleton["accepted"] == skeleton["at_twilio"] == skeleton["alerts"]  # every alert POSTed, once
    assert {"intake", "delivery", "cost", "load_average"} <= result.keys()


@needs_servers
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
