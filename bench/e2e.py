"""`make bench`'s harness: one load at one system, measured from outside its processes.

A system is either the service, started as `make run` starts it (`manage.py migrate`, then `bin/run`) with
its own VAR_DIR and port, or the synchronous baseline (bench/baseline.py on gunicorn with 4 sync workers).
The service's public URL is https://127.0.0.1:<port>, as behind a TLS proxy on the same machine: every
call to it carries `X-Forwarded-Proto: https`, and Twilio's status callbacks reach it (bench/fakes.py).
With events on, its organisations are subscribed first (bench/events.py) and LC_HOOK_BASE_URL is the fake
LimaCharlie, whose hook counts the events it gets.
The load: signed, gzipped `run` calls from keep-alive callers spread over up to 4 processes, from
organisations that each have their own Twilio account, every alert to its own recipient, so no flood limit
applies. The fake Twilio (bench/fakes.py) records when each POST arrived, by recipient.

Measured: end-to-end throughput (accepted alerts that reached Twilio ÷ the time from the first call to the
last POST's arrival); the POSTs per recipient, read once the system's processes have ended, so that no later
POST can still come; and the CPU seconds of the web (gunicorn) and worker (celery) processes over the same
span, from /proc; the span ends once Twilio has every message, the service has taken every status
callback and, with events on, the hook has an event for every alert.
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

from bench.procs import cpu_by_kind, workers_started
from extension.schema import EVENT_KINDS

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SENDER = "+15005550006"
# Events on: every kind, `delivered` included, so that every alert makes one (its text's receipt).
EVENTS_CONFIG = {"events": list(EVENT_KINDS)}


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


def envelope(org: Org, i: int, config: dict[str, Any]) -> bytes:
    body = {
        "version": 20221218,
        "idempotency_key": f"bench-{uuid.uuid4()}",
        "request": {
            "org": {"oid": org.oid, "jwt": org.jwt, "ident": "dr-general/bench"},
            "action": "run",
            "data": {"body": f"Detection {i}: suspicious powershell on host-17", "from": SENDER, "to": recipient(i)},
            "config": config,
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
    config: dict[str, Any]  # the extension configuration each call carries


def _caller(job: Job, work: queue.SimpleQueue[int], out: list[Call]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", job.port, timeout=130)
    while time.time() < job.deadline:
        try:
            i = work.get_nowait()
        except queue.Empty:
            break
        body = envelope(job.orgs[i % len(job.orgs)], i, job.config)
        headers = signed_headers(job.secret, body)
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


def signed_headers(secret: str, body: bytes) -> dict[str, str]:
    """LimaCharlie's signature of a body sent gzipped, through the TLS proxy (the baseline ignores its header)."""
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip", "lc-ext-sig": signature}
    return {**headers, "X-Forwarded-Proto": "https"}


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


def drive(
    system: System, orgs: list[Org], alerts: int, callers: int, seconds: float, config: dict[str, Any]
) -> list[Call]:
    """`alerts` calls from `callers` keep-alive connections in up to 4 processes (so that the load
    generator's own Python is not the bottleneck); stops early at `seconds`."""
    processes = max(1, min(callers, 4))
    per = [callers // processes + (1 if p < callers % processes else 0) for p in range(processes)]
    deadline = time.time() + seconds
    jobs = [
        Job(system.port, system.path, system.secret, orgs, list(range(p, alerts, processes)), per[p], deadline, config)
        for p in range(processes)
    ]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        parts = pool.map(_caller_process, jobs)
    return [call for part in parts for call in part]


# --- processes -------------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, quiet: bool = False) -> Any:
    """The predicate's first true value; at the timeout, an error (or, `quiet`, its last value)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    if quiet:
        return predicate()
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
    receipts: bool = False  # asks Twilio for status callbacks
    events: bool = False  # sends events to LimaCharlie's hook
    config: dict[str, Any] = field(default_factory=dict)  # the extension configuration its calls carry


def _refuse_a_dotenv_backend() -> None:
    dotenv = ROOT / ".env"
    named = {line.split("=", 1)[0].strip() for line in dotenv.read_text().splitlines()} if dotenv.exists() else set()
    if {"DATABASE_URL", "CELERY_BROKER_URL"} & named:
        raise SystemExit(
            f"{dotenv} sets DATABASE_URL or CELERY_BROKER_URL, so `make run` here does not run on the embedded "
            "defaults and neither would the benchmark: move them out of .env"
        )


def start_service(var_dir: Path, urls: dict[str, str], port: int, backend_env: dict[str, str], events: bool) -> System:
    """`make run` from an empty VAR_DIR: migrate, then bin/run; ready when every Celery worker it started
    says so and the web answers. With `events`, the organisations' events go to the fake LimaCharlie's hook."""
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
            "PUBLIC_BASE_URL": f"https://127.0.0.1:{port}",
            **({"LC_HOOK_BASE_URL": urls["limacharlie"]} if events else {}),
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

    system = System(proc, port, "/extension/", secret, signal.SIGINT, True, events, EVENTS_CONFIG if events else {})
    return _started(system, ready, f"bin/run (see {log})")


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
    receipts: int = 0  # status callbacks the service answered 200
    events: bool = False  # whether the run had events for LimaCharlie on
    hook_posts: int = 0  # POSTs to the organisations' hook
    hook_events: int = 0  # events they carried
    events_once: int = 0  # accepted alerts with exactly one event at the hook


def measure(name: str, system: System, orgs: list[Org], urls: dict[str, str], alerts: int, callers: int) -> Measured:
    """Drive `alerts` calls at a started system, wait until what they cause has happened (bounded), stop the
    system, then count what reached Twilio (and the hook)."""
    twilio = urls["twilio"]
    http_get(twilio, "/_bench/reset")
    http_get(urls["limacharlie"], "/_bench/hook/reset")
    drain = max(60.0, alerts / 5)
    try:
        cpu0, started = cpu_by_kind(system.proc.pid), time.time()
        calls = drive(system, orgs, alerts, callers, drain, system.config)
        accepted = {recipient(i) for i, status, _ in calls if status == 200}
        wait_until(lambda: _settled(system, urls, len(accepted)), drain, "", quiet=True)
        cpu1 = cpu_by_kind(system.proc.pid)
    finally:
        stop_group(system.proc, system.stop_signal)
    arrivals: dict[str, list[float]] = http_get(twilio, "/_bench/arrivals")
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
    result.receipts = http_get(twilio, "/_bench/stats")["receipts"]
    if system.events:
        hook = http_get(urls["limacharlie"], "/_bench/hook")
        result.events, result.hook_posts, result.hook_events = True, hook["posts"], hook["events"]
        result.events_once = sum(hook["by_recipient"].get(to) == 1 for to in accepted)
    return result


def _settled(system: System, urls: dict[str, str], accepted: int) -> bool:
    """Twilio has every message; the service has taken both status callbacks of each (when it asks for
    them) and, with events on, the hook has at least an event per alert."""
    if system.proc.poll() is not None:
        raise RuntimeError(f"the system stopped with {system.proc.returncode} during the load; see its log")
    stats = http_get(urls["twilio"], "/_bench/stats")
    if stats["count"] < accepted or (system.receipts and stats["receipts"] + stats["refused"] < 2 * accepted):
        return False
    return not system.events or http_get(urls["limacharlie"], "/_bench/hook")["events"] >= accepted
