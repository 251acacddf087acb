"""`make bench`'s report: every figure beside its baseline and ratio, and the verdict on each goal.
(The benchmark itself is never run by the tests: speed lives in `make bench`.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import run as bench


def _result() -> dict[str, Any]:
    intake = []
    for callers, (rps, p99, floor) in {1: (100, 12, 400), 8: (210, 45, 400), 32: (220, 60, 400)}.items():
        intake.append(
            {
                "endpoint": "/extension/",
                "callers": callers,
                "seconds": 10,
                "ok": rps * 10,
                "errors": 0,
                "rps": rps,
                "p50_ms": p99 / 2,
                "p99_ms": p99,
            }
        )
        intake.append(
            {
                "endpoint": "/bench/bare/",
                "callers": callers,
                "seconds": 10,
                "ok": floor * 10,
                "errors": 0,
                "rps": floor,
                "p50_ms": 1,
                "p99_ms": 5,
            }
        )
    return {
        "when": "2026-01-01 00:00 UTC",
        "machine": "2 cores",
        "mode": "quick",
        "load_average": {"start": 0.5, "end": 1.5},
        "settings": {
            "twilio_latency_ms": 100,
            "seconds_per_intake_point": 10,
            "messages": 1000,
            "celery": "2 processes x 16 threads (--pool=threads)",
            "gunicorn": "2 workers x 4 threads",
        },
        "intake": intake,
        "delivery": {"messages": 1000, "rate": 120.0, "limit": 300.0},
        "cost": {
            "web": {"cpu_ms_per_1000": 5000, "floor_cpu_ms_per_1000": 1000, "peak_rss_mb": 200, "processes": 3},
            "worker": {"cpu_ms_per_1000": 8000, "peak_rss_mb": 220, "processes": 2},
            "sdk_loop": {"cpu_ms_per_1000": 2000, "processes": 2},
        },
    }


def test_the_report_gives_each_figure_with_its_ratio_and_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    bench.report(_result())

    table = (tmp_path / "latest-quick.md").read_text()
    assert "| accepted and persisted | 8 | 210 | 22.5 | 45.0 | 400 | 5.0 | 0.53 | ≥ 0.50: met |" in table
    assert (
        "| accepted and persisted | 32 | 220 | 30.0 | 60.0 | 400 | 5.0 | 0.55 | ≥ 0.50, p99 < 50 ms: missed |" in table
    )
    assert "| 2 processes x 16 threads (--pool=threads) | 1000 | 120 | 300 | 0.40 | ≥ 0.50: missed |" in table
    assert "| worker (Celery, thread pool) | 2 | 8000 | 220 | 2000 (bare SDK loop) | 4.0× |" in table
    assert "load average 0.5 at the start, 1.5 at the end" in table
    assert json.loads((tmp_path / "latest-quick.json").read_text())["delivery"]["limit"] == 300.0
