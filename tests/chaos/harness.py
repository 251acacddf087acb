"""A whole ext-twilio stack in subprocesses, with servers of its own that a test may stop and start.

`Stack` runs gunicorn and a Celery worker (with beat, so the sweeper runs) against a database and
a Redis broker private to the scenario, and the fake Twilio and LimaCharlie servers. `Caller`
sends signed, gzipped `run` requests the way LimaCharlie does, retrying 5xx and connection errors
three times. `Stack.report()` reads the outcome back from the database in a separate process.

Used by tests/chaos/test_chaos.py: short runs in `make test`, and the 10,000-request load run of
`make chaos` (CHAOS_REQUESTS).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from extension.envelope import SIGNATURE_HEADER, build, gzip_bytes, sign

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


class RedisServer:
    """A Redis of the scenario's own (no persistence, like the machine's), so stopping it harms nobody."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _connects(self.port), 20, "redis start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None


class PostgresServer:
    """A PostgreSQL cluster of the scenario's own, in a temporary folder, on its own port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ext-twilio-pg-"))
        self.bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
        self._as_postgres = os.geteuid() == 0  # PostgreSQL refuses to run as root
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.dir / "data"),
            "-l",
            str(self.dir / "log"),
            "-w",
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Stack:
    """gunicorn + a Celery worker with beat, on the given database and broker."""

    def __init__(
        self, database_url: str, broker_url: str, twilio_url: str, lc_url: str, var_dir: Path, **settings: str
    ) -> None:
        self.port = free_port()
        self.var_dir = var_dir
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": broker_url,
            "TWILIO_API_BASE_URL": twilio_url,
            "LC_API_URL": lc_url,
            "VAR_DIR": str(var_dir),
            "TWILIO_TIMEOUT_SECONDS": "2",
            "SWEEP_INTERVAL_SECONDS": "1",
            "SWEEP_PENDING_SECONDS": "3",
            "SWEEP_STUCK_SECONDS": "43",
            "RECONCILE_GRACE_SECONDS": "1",
            "SEND_RETRY_BASE_SECONDS": "1",
            "SEND_RETRY_MAX_SECONDS": "2",
            "SEND_MAX_ATTEMPTS": "12",
            "LOG_LEVEL": "WARNING",
            # Load runs send thousands of alerts from one organisation: keep its limit out of the way.
            "FLOOD_ORG_LIMIT": "0",
            **settings,
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/extension/"

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        if result.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def start(self) -> None:
        self.manage("migrate", "--noinput")
        bin_dir = Path(sys.executable).parent
        log = open(self.var_dir / "stack.log", "ab")  # noqa: SIM115 - lives as long as the processes
        self.procs.append(
            subprocess.Popen(
                [
                    str(bin_dir / "gunicorn"),
                    "config.wsgi",
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--workers",
                    "2",
                    "--threads",
                    "8",
                    "--graceful-timeout",
                    "5",
                ],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        self.procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "--pool=threads",
                    "--concurrency=16",
                    "--loglevel=WARNING",
                    "--without-mingle",
                    "--without-gossip",
                    "--beat",
                    f"--schedule={self.var_dir / 'beat-schedule'}",
                ],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        wait_until(lambda: _connects(self.port), 60, "gunicorn start")

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()  # a half-started stack must not outlive the test
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs = []

    def report(self) -> dict[str, Any]:
        """Delivery counts by status, and per idempotency key, read in a separate process."""
        code = (
            "import json, django; django.setup()\n"
            "from django.db.models import Count\n"
            "from deliveries.models import Delivery, Attempt\n"
            "print(json.dumps({'status': dict(Delivery.objects.values_list('status').annotate(n=Count('id'))),"
            " 'keys': sorted(set(Delivery.objects.exclude(kind='summary').values_list('idempotency_key', flat=True))),"
            " 'attempts': dict(Attempt.objects.values_list('outcome').annotate(n=Count('id')))}))"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        if result.returncode:
            raise RuntimeError(result.stderr[-3000:])
        return json.loads(result.stdout)

    def settled(self) -> dict[str, Any] | None:
        report = self.report()
        in_flight = sum(report["status"].get(s, 0) for s in ("pending", "sending", "ambiguous"))
        return report if in_flight == 0 else None


@dataclass
class Call:
    key: str
    to: str
    body: str
    statuses: list[int] = field(default_factory=list)
    reply: dict[str, Any] | None = None

    @property
    def accepted(self) -> bool:
        return bool(self.statuses) and self.statuses[-1] == 200


class Caller:
    """Sends `run` requests as LimaCharlie does: signed, gzipped, at most 3 attempts with backoff on
    5xx and connection errors, never retrying a 4xx."""

    def __init__(self, url: str, secret: str, oid: str, jwt: str, sender: str, attempts: int = 3) -> None:
        self.url, self.secret, self.oid, self.jwt, self.sender, self.attempts = url, secret, oid, jwt, sender, attempts
        self.session = requests.Session()

    def call(self, call: Call) -> Call:
        block = {
            "org": {"oid": self.oid, "jwt": self.jwt, "ident": "chaos"},
            "action": "run",
            "data": {"body": call.body, "from": self.sender, "to": call.to},
            "config": {},
            "resource_state": None,
            "inv_id": "",
        }
        body = build("request", block, call.key)
        headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            SIGNATURE_HEADER: sign(self.secret, body),
        }
        delay = 1.0
        for attempt in range(self.attempts):
            try:
                response = requests.post(self.url, data=gzip_bytes(body), headers=headers, timeout=120)
                call.statuses.append(response.status_code)
                if response.status_code < 500:
                    call.reply = response.json()
                    return call
            except requests.RequestException:
                call.statuses.append(0)
            if attempt + 1 < self.attempts:
                time.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 15)
        return call

    def burst(self, calls: list[Call], concurrency: int = 8) -> list[Call]:
        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(self.call, calls))


def new_calls(count: int, start: int = 0, tag: str = "") -> list[Call]:
    """Distinct recipients (fictional 555 numbers) and bodies, so flood control holds nothing back."""
    return [
        Call(key=str(uuid.uuid4()), to=f"+1500{start + n:07d}", body=f"{tag}alert {start + n}") for n in range(count)
    ]
