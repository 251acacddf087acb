"""deploy/Procfile is run as written: its release, web and worker commands start and answer. The
systemd units run the same commands."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import free_port
from tests.conftest import ROOT, _database_url, wait_for

PROCFILE = ROOT / "deploy" / "Procfile"
SYSTEMD = ROOT / "deploy" / "systemd"


def _procfile() -> dict[str, str]:
    processes = {}
    for line in PROCFILE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            processes[name.strip()] = command.strip()
    return processes


@pytest.fixture
def process_env(django_db_setup: Any, django_db_blocker: Any, tmp_path: Path) -> dict[str, str]:
    with django_db_blocker.unblock():
        database_url = _database_url()
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DATABASE_URL": database_url,
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "2",
        "CELERY_CONCURRENCY": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
    }


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for proc in processes:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _start(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # A shell, as honcho and foreman run Procfile lines (they expand ${VAR:-default}).
    return subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        env=env,
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except OSError:
        return 0, b""


def test_the_procfile_declares_release_web_worker_and_beat() -> None:
    assert set(_procfile()) == {"release", "web", "worker", "beat"}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_procfile_processes_start_and_answer(
    process_env: dict[str, str], started: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    processes = _procfile()
    release = subprocess.run(
        ["bash", "-c", processes["release"]], env=process_env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert release.returncode == 0, release.stderr

    web_log, worker_log, beat_log = tmp_path / "web.log", tmp_path / "worker.log", tmp_path / "beat.log"
    started.append(_start(processes["web"], process_env, web_log))
    started.append(_start(processes["worker"], process_env, worker_log))
    started.append(_start(processes["beat"], {**process_env, "VAR_DIR": str(tmp_path)}, beat_log))
    base = f"http://127.0.0.1:{process_env['PORT']}"

    def answers() -> bool:
        assert all(p.poll() is None for p in started), web_log.read_text() + worker_log.read_text()
        return _get(f"{base}/healthz")[0] == 200

    wait_for(answers, timeout=60, interval=0.3)
    assert _get(f"{base}/readyz") == (200, b'{"status":"ok","checks":{"database":"ok","broker":"ok"}}')
    status, metrics = _get(f"{base}/metrics")
    assert status == 200 and b"ext_twilio_deliveries{" in metrics
    wait_for(lambda: b"ready." in worker_log.read_bytes(), timeout=60, interval=0.3)
    assert "Booting worker with pid" in web_log.read_text()  # gunicorn's workers, per its config file
    assert b"concurrency: 2 (thread)" in worker_log.read_bytes()
    wait_for(lambda: b"beat: Starting" in beat_log.read_bytes(), timeout=60, interval=0.3)
    # The sweep it schedules reaches the worker and runs there.
    wait_for(lambda: b"deliveries.sweep" in worker_log.read_bytes(), timeout=60, interval=0.3)


def _systemd_exec(unit: str) -> str:
    match = re.search(r"^ExecStart=(.+)$", (SYSTEMD / unit).read_text(), re.MULTILINE)
    assert match
    return match.group(1).replace("/srv/ext-twilio/.venv/bin/", "")


def test_the_systemd_units_run_the_procfile_commands() -> None:
    processes = _procfile()
    assert _systemd_exec("ext-twilio-migrate.service") == processes["release"]
    assert _systemd_exec("ext-twilio-web.service") == processes["web"]
    assert _systemd_exec("ext-twilio-worker.service") == processes["worker"].replace(
        "${CELERY_CONCURRENCY:-16}", "${CELERY_CONCURRENCY}"
    )
    assert _systemd_exec("ext-twilio-beat.service") == processes["beat"].replace("${VAR_DIR:-var}", "${VAR_DIR}")
