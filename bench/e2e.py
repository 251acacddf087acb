"""`make bench`'s harness: one load at one system, measured from outside its processes.

A system is either the service, started as `make run` starts it (`manage.py migrate`, then `bin/run`) with
its own VAR_DIR and port, or the synchronous baseline (bench/baseline.py on gunicorn with 4 sync workers).
The load: signed, gzipped `run` calls from keep-alive callers spread over up to 4 processes, from
organisations that each have their own Twilio account, every alert to its own recipient, so no flood limit
applies. The fake Twilio (bench/fakes.py) records when each POST arrived, by recipient.

Measured: end-to-end throughput (accepted alerts that reached Twilio ÷ the time from the first call to the
last POST's arrival); the POSTs per recipient, read once the system's processes have ended, so that no later
POST can still come; and the CPU seconds of the web (gunicorn) and worker (celery) processes over the same
span, from /proc.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SENDER = "+15005550006"
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Org:
    """An organisation as the fakes know it: its JWT, and its own Twilio account in its Hive secret."""

    oid: str = field(default_factory=lambda: str(uuid.uuid4()))
    jwt: str = field(default_factory=lambda: "eyJ" + secrets.token_urlsafe(40))
    account_sid: str = field(default_factory=lambda: "AC" + secrets.token_hex(16))
    auth_token: str = field(default_factory=lambda: secrets.token_hex(16))


def recipient(i: int) -> str:
    """A distinct recipient per alert (fictional +1 500 numbers)."""
    return f"+1500556{i:04d}"


def envelope(org: Org, i: int) -> bytes:
    body = {
        "version": 20221218,
        "idempotency_key": f"bench-{uuid.uuid4()}",
        "request": {
            "org": {"oid": org.oid, "jwt": org.jwt, "ident": "dr-general/bench"},
            "action": "run",
            "data": {"body": f"Detection {i}: suspicious powershell on host-17", "from": SENDER, "to": recipient(i)},
            "config": {},
            "inv_id": f"inv-{i}",
        },
    }
    return json.dumps(body, separators=(",", ":")).encode()


# --- the load --------------------------------------------------------------------------------------------

Call = tuple[int, int, float]  # alert index, HTTP status (0: no answer), sent at (epoch s)


class Job(NamedTuple):
    """One load process's share: its alerts, sent from `threads` keep-alive connections until `deadline`."""

    port: int
    path: str
    secret: str
    orgs: list[Org]
    alerts: list[int]
    threads: int
    deadline: float


def _caller(job: Job, work: queue.SimpleQueue[int], out: list[Call]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", job.port, timeout=130)
    while time.time() < job.deadline:
        try:
            i = work.get_nowait()
        except queue.Empty:
            break
        body = envelope(job.orgs[i % len(job.orgs)], i)
        signature = hmac.new(job.secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip", "lc-ext-sig": signature}
        sent = time.time()
        try:
            conn.request("POST", job.path, gzip.compress(body), headers)
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", job.port, timeout=130)
            status = 0
        out.append((i, status, sent))
    conn.close()


def _caller_process(job: Job) -> list[Call]:
    work: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in job.alerts:
        work.put(i)
    results: list[list[Call]] = [[] for _ in range(job.threads)]
    threads = [threading.Thread(target=_caller, args=(job, work, out)) for out in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [call for out in results for call in out]


def drive(port: int, path: str, secret: str, orgs: list[Org], alerts: int, callers: int, seconds: float) -> list[Call]:
    """`alerts` calls from `callers` keep-alive connections in up to 4 processes (so that the load
    generator's own Python is not the bottleneck); stops early at `seconds`."""
    processes = max(1, min(callers, 4))
    per = [callers // processes + (1 if p < callers % processes else 0) for p in range(processes)]
    deadline = time.time() + seconds
    jobs = [
        Job(port, path, secret, orgs, list(range(p, alerts, processes)), per[p], deadline) for p in range(processes)
    ]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        parts = pool.map(_caller_process, jobs)
    return [call for part in parts for call in part]


# --- processes -------------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


def http_get(base_url: str, path: str) -> Any:
    host, port = base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def answers(port: int, path: str) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", path)
        status = conn.getresponse().status
        conn.close()
        return status < 500
    except OSError:
        return False


def _stat(pid: int) -> list[str]:
    """The fields of /proc/pid/stat after the command name (field 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            kids.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return kids


def _kind(pid: int) -> str | None:
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    return "web" if b"gunicorn" in cmdline else "worker" if b"celery" in cmdline else None


def cpu_by_kind(pid: int) -> dict[str, float]:
    """CPU seconds (user + system, its reaped children's included) of the processes under pid, by kind:
    `web` (gunicorn) and `worker` (celery)."""
    totals, kids, todo = {"web": 0.0, "worker": 0.0}, _children(), [pid]
    while todo:
        current = todo.pop()
        todo.extend(kids.get(current, []))
        try:
            kind, fields = _kind(current), _stat(current)
        except OSError:
            continue
        if kind:
            totals[kind] += sum(int(fields[n]) for n in (11, 12, 13, 14)) / TICK
    return totals


def workers_started(pid: int) -> int:
    """Celery workers under pid (bin/run): celery processes whose parent is not one (a worker's own
    children, such as its beat, are not workers)."""
    kids, todo, started = _children(), [(pid, False)], 0
    while todo:
        current, parent_is_celery = todo.pop()
        try:
            celery = _kind(current) == "worker"
        except OSError:
            continue
        started += celery and not parent_is_celery
        todo.extend((child, celery) for child in kids.get(current, []))
    return started


def stop_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Stop a process started in its own session (SIGINT: bin/run's Ctrl-C), then SIGKILL it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without the service's settings that a system is given by the bench."""
    own = ("DATABASE_URL", "CELERY_BROKER_URL", "PROMETHEUS_MULTIPROC_DIR", "VAR_DIR", "PORT", "HOST")
    prefixes = ("DJANGO_", "EXT_TWILIO_", "PYTEST_", "BENCH_")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(prefixes) and k not in own}, **extra}


# --- the systems -----------------------------------------------------------------------------------------


@dataclass
class System:
    """A started system: its process group, where it takes `run` calls, and its shared secret."""

    proc: subprocess.Popen[bytes]
    port: int
    path: str
    secret: str
    stop_signal: int


def _refuse_a_dotenv_backend() -> None:
    dotenv = ROOT / ".env"
    named = {line.split("=", 1)[0].strip() for line in dotenv.read_text().splitlines()} if dotenv.exists() else set()
    if {"DATABASE_URL", "CELERY_BROKER_URL"} & named:
        raise SystemExit(
            f"{dotenv} sets DATABASE_URL or CELERY_BROKER_URL, so `make run` here does not run on the embedded "
            "defaults and neither would the benchmark: move them out of .env"
        )


def start_service(var_dir: Path, urls: dict[str, str], port: int, backend_env: dict[str, str]) -> System:
    """`make run` from an empty VAR_DIR: migrate, then bin/run; ready when every Celery worker it started
    says so and the web answers."""
    if not backend_env:
        _refuse_a_dotenv_backend()
    from cryptography.fernet import Fernet

    shutil.rmtree(var_dir, ignore_errors=True)
    var_dir.mkdir(parents=True)
    secret = secrets.token_urlsafe(24)
    env = clean_env(
        {
            "SECRET_KEY": secrets.token_urlsafe(40),
            "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "LC_SHARED_SECRET": secret,
            "LC_API_URL": urls["limacharlie"],
            "TWILIO_API_BASE_URL": urls["twilio"],
            "VAR_DIR": str(var_dir),
            "PROMETHEUS_MULTIPROC_DIR": str(var_dir / "prometheus"),
            "PORT": str(port),
            **backend_env,
        }
    )
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env=env, cwd=ROOT, check=True)
    log = var_dir / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(ROOT / "bin" / "run")], env=env, cwd=ROOT, stdout=out, stderr=out, start_new_session=True)  # fmt: skip

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"bin/run ended with {proc.returncode}; see {log}")
        workers = workers_started(proc.pid)
        return 0 < workers <= log.read_bytes().count(b" ready.") and answers(port, "/healthz")

    return _started(System(proc, port, "/extension/", secret, signal.SIGINT), ready, f"bin/run (see {log})")


def start_baseline(var_dir: Path, urls: dict[str, str], port: int) -> System:
    """bench/baseline.py (lcextension) on gunicorn with 4 sync workers."""
    var_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(24)
    env = clean_env({"LC_SHARED_SECRET": secret, "LC_API_URL": urls["limacharlie"], "TWILIO_API_BASE_URL": urls["twilio"]})  # fmt: skip
    args = [PY, "-m", "gunicorn", "bench.baseline:app", "--workers", "4", "--bind", f"127.0.0.1:{port}"]
    with (var_dir / "baseline.log").open("wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=out, start_new_session=True)
    return _started(System(proc, port, "/", secret, signal.SIGTERM), lambda: answers(port, "/"), "the baseline")


def _started(system: System, ready: Callable[[], bool], what: str) -> System:
    try:
        wait_until(ready, 120, what)
    except BaseException:
        stop_group(system.proc, system.stop_signal)
        raise
    return system


# --- one measurement -------------------------------------------------------------------------------------


@dataclass
class Measured:
    system: str
    alerts: int
    accepted: int = 0
    rate: float = 0.0  # alerts/s reaching Twilio
    web_cpu_ms: float = 0.0  # per alert
    worker_cpu_ms: float = 0.0
    posts: dict[str, int] = field(default_factory=dict)  # POSTs to Twilio, by recipient
    once: int = 0  # accepted alerts whose recipient got exactly one POST
    missing: int = 0
    doubled: int = 0
    unexpected: int = 0  # POSTs to a recipient whose call was not accepted


def measure(name: str, system: System, orgs: list[Org], twilio_url: str, alerts: int, callers: int) -> Measured:
    """Drive `alerts` calls at a started system, wait until Twilio has them all (bounded), stop the system,
    then count what reached Twilio."""
    http_get(twilio_url, "/_bench/reset")
    drain = max(60.0, alerts / 5)
    try:
        cpu0, started = cpu_by_kind(system.proc.pid), time.time()
        calls = drive(system.port, system.path, system.secret, orgs, alerts, callers, drain)
        accepted = {recipient(i) for i, status, _ in calls if status == 200}
        deadline = time.time() + drain
        while http_get(twilio_url, "/_bench/stats")["count"] < len(accepted) and time.time() < deadline:
            time.sleep(0.1)
        cpu1 = cpu_by_kind(system.proc.pid)
    finally:
        stop_group(system.proc, system.stop_signal)
    arrivals: dict[str, list[float]] = http_get(twilio_url, "/_bench/arrivals")
    result = Measured(name, alerts, len(accepted), posts={to: len(times) for to, times in arrivals.items()})
    result.once = sum(result.posts.get(to) == 1 for to in accepted)
    result.missing = sum(to not in result.posts for to in accepted)
    result.doubled = len(accepted) - result.once - result.missing
    result.unexpected = sum(n for to, n in result.posts.items() if to not in accepted)
    reached = [min(times) for to, times in arrivals.items() if to in accepted]
    if reached and max(reached) > started:
        result.rate = len(reached) / (max(reached) - started)
    per_alert = 1000 / max(1, len(accepted))
    result.web_cpu_ms = (cpu1["web"] - cpu0["web"]) * per_alert
    result.worker_cpu_ms = (cpu1["worker"] - cpu0["worker"]) * per_alert
    return result
