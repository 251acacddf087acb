"""`make run`'s last step, bin/run: it starts the web service and two workers (one with beat), prints
where to point LimaCharlie, answers, and Ctrl-C stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import requests

from extension.envelope import SIGNATURE_HEADER, build, sign
from tests.chaos.harness import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent


def test_bin_run_serves_the_extension_runs_two_workers_and_stops_them_all_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    subprocess.run(
        [str(ROOT / ".venv/bin/python"), "manage.py", "migrate", "--noinput"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(ROOT / "bin/run")], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_until(lambda: log.read_bytes().count(b" ready.") == 2, 60, "both workers ready")
            body = build("heartbeat", {}, "k")
            response = wait_until(lambda: _post(port, body, env["LC_SHARED_SECRET"]), 30, "web answers")
            assert (response.status_code, response.json()) == (200, {"version": 20221218, "data": {}})
            workers = _workers(proc.pid)
            assert len(workers) == 2
            assert sum("--beat" in command for command in workers) == 1  # the sweeper's schedule runs once
        finally:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
            proc.wait(timeout=60)

    text = log.read_text()
    assert f"Extension URL:  http://127.0.0.1:{port}/extension/" in text
    assert "Shared Secret:  from the LC_SHARED_SECRET environment variable" in text
    assert env["LC_SHARED_SECRET"] not in text  # where it comes from, never the secret itself
    assert "worker1@" in text and "worker2@" in text
    assert text.count("beat: Starting") == 1
    assert proc.returncode == 0
    gone = ["pgrep", "-f", f"127.0.0.1:{port}"]
    wait_until(lambda: subprocess.run(gone, capture_output=True).returncode == 1, 30, "bin/run's processes gone")
    assert _running(proc.pid) == {}  # nothing of bin/run's is left


def _running(group: int) -> dict[int, tuple[int, str]]:
    """The processes of bin/run's process group still running (not ended and waiting to be reaped,
    which a container without an init may leave): pid -> (parent pid, command line)."""
    processes: dict[int, tuple[int, str]] = {}
    for pid in subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True).stdout.split():
        try:
            state, parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:2]
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if state != "Z":
            processes[int(pid)] = (int(parent), command)
    return processes


def _workers(group: int) -> list[str]:
    """The command lines of the Celery workers bin/run started. The beat that --beat forks from its
    worker has the same command line; it is not counted."""
    processes = _running(group)
    worker = "celery -A config worker"
    return [
        command
        for parent, command in processes.values()
        if worker in command and worker not in processes.get(parent, (0, ""))[1]
    ]


def _post(port: int, body: bytes, secret: str) -> requests.Response | None:
    try:
        return requests.post(
            f"http://127.0.0.1:{port}/extension/",
            data=body,
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body)},
            timeout=5,
        )
    except requests.ConnectionError:
        return None
