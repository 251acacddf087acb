"""`make bench`'s headline scenario, "end to end": issue 9's harness.

A stack started exactly as `make run` starts it (`manage.py migrate`, then `bin/run`: gunicorn with
deploy/gunicorn.conf.py and two Celery workers, the first with beat, thread pool, default settings), with its own
VAR_DIR under var/bench/ and its own port, on one of two backends:

- `embedded`: the defaults, SQLite (WAL) and kombu's filesystem broker in that VAR_DIR;
- `postgres`: DATABASE_URL = its own PostgreSQL database (ext_twilio_bench_e2e, dropped and created),
  CELERY_BROKER_URL = its own Redis db (11, flushed).

And the synchronous baseline (bench/baseline.py: lcextension on gunicorn with 4 workers, a Hive read and
the Twilio POST inside the request) under the same load.

The load: N signed, gzipped `run` calls from C keep-alive callers (spread over up to 4 processes), from
O organisations that each have their own Twilio account (the fake LimaCharlie serves each org's secret,
the fake Twilio knows each account), each to its own recipient, so no flood limit applies. The fake
Twilio answers after 100 ms and records when each POST arrived, by recipient.

Measured per system: intake calls/s, p50/p99 ms; end-to-end messages/s (accepted alerts ÷ from the
first call to the fake Twilio's receipt of the last one); per-alert latency p50/p99 from the intake's
200 answer for that alert to the arrival of its POST at the fake Twilio (matched by recipient), and
from the call's start to that arrival; every accepted alert at Twilio exactly once; CPU per call and
per message of the web and worker processes over the scenario; the 1-minute load average.
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
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
SENDER = "+15005550006"


@dataclass
class Org:
    """An organisation as the fakes know it: its JWT, and its own Twilio account in its Hive secret."""

    oid: str = field(default_factory=lambda: str(uuid.uuid4()))
    jwt: str = field(default_factory=lambda: "eyJ" + secrets.token_urlsafe(40))
    account_sid: str = field(default_factory=lambda: "AC" + secrets.token_hex(16))
    auth_token: str = field(default_factory=lambda: secrets.token_hex(16))


def recipient(i: int) -> str:
    """A distinct recipient per alert (fictional +1 500 numbers), so no flood limit applies."""
    return f"+1500556{i:04d}"


def envelope(org: Org, i: int) -> bytes:
    body = {
        "version": 20221218,
        "idempotency_key": f"bench-e2e-{uuid.uuid4()}",
        "request": {
            "org": {"oid": org.oid, "jwt": org.jwt, "ident": "dr-general/bench"},
            "action": "run",
            "data": {"body": f"Detection {i}: suspicious powershell on host-17", "from": SENDER, "to": recipient(i)},
            "config": {},
            "inv_id": f"inv-{i}",
        },
    }
    return json.dumps(body, separators=(",", ":")).encode()


# --- the load: a fixed number of calls, bounded in time -------------------------------------------------

Call = tuple[int, int, float, float]  # alert index, HTTP status (0: no answer), sent at, answered at (epoch s)


def _caller(port: int, path: str, secret: str, orgs: list[Org], work: queue.SimpleQueue[int], deadline: float,
            out: list[Call]) -> None:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=130)
    while time.time() < deadline:
        try:
            i = work.get_nowait()
        except queue.Empty:
            break
        body = envelope(orgs[i % len(orgs)], i)
        headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "lc-ext-sig": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
        }
        payload = gzip.compress(body, compresslevel=6)
        sent = time.time()
        try:
            conn.request("POST", path, payload, headers)
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=130)
            status = 0
        out.append((i, status, sent, time.time()))
    conn.close()


def _caller_process(args: tuple[int, str, str, list[Org], list[int], int, float]) -> list[Call]:
    port, path, secret, orgs, indices, threads, deadline = args
    work: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in indices:
        work.put(i)
    results: list[list[Call]] = [[] for _ in range(threads)]
    pool = [
        threading.Thread(target=_caller, args=(port, path, secret, orgs, work, deadline, results[t]))
        for t in range(threads)
    ]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return [r for rs in results for r in rs]


def drive(port: int, path: str, secret: str, orgs: list[Org], alerts: int, callers: int, seconds: float) -> list[Call]:
    """`alerts` calls from `callers` keep-alive connections; stops early at `seconds`."""
    processes = max(1, min(callers, 4))
    per = [callers // processes + (1 if p < callers % processes else 0) for p in range(processes)]
    deadline = time.time() + seconds
    jobs = [(port, path, secret, orgs, list(range(p, alerts, processes)), per[p], deadline) for p in range(processes)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        parts = pool.map(_caller_process, jobs)
    return [r for part in parts for r in part]


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


def answers(port: int, path: str = "/healthz") -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", path)
        status = conn.getresponse().status
        conn.close()
        return status < 500
    except OSError:
        return False


def children(pid: int) -> list[int]:
    """pid and all its descendants."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(kids.get(current, []))
    return tree


TICK = os.sysconf("SC_CLK_TCK")


def cpu_by_kind(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of the processes under pid, by kind: `web` (gunicorn), `worker`
    (celery). Processes that ended meanwhile are not counted: none should, in a scenario."""
    totals = {"web": 0.0, "worker": 0.0}
    for p in children(pid):
        try:
            cmdline = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = "web" if b"gunicorn" in cmdline else "worker" if b"celery" in cmdline else None
        if kind:
            totals[kind] += (int(fields[11]) + int(fields[12])) / TICK
    return totals


# Who else runs on the machine's cores while the calls come in: the kinds `machine_cpu` sorts processes into.
KINDS = ("web", "worker", "load generator", "fakes", "PostgreSQL", "Redis")


def _kind(cmdline: bytes) -> str | None:
    if b"gunicorn" in cmdline:
        return "web"
    if b"celery" in cmdline:
        return "worker"
    if b"bench.fakes" in cmdline:
        return "fakes"
    if cmdline.startswith(b"postgres"):
        return "PostgreSQL"  # its server processes: the postmaster and one per connection
    if b"redis-server" in cmdline:
        return "Redis"
    return None  # the machine's RabbitMQ, idle here, is among the rest


def machine_cpu() -> dict[str, float]:
    """CPU seconds so far: `machine`, every core's busy time (/proc/stat), and by kind the processes on the
    machine (KINDS). The load generator is this process's children that have ended (`drive`'s processes,
    reaped when it returns); the rest is read from /proc. A process that ends in between is not counted."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    totals = dict.fromkeys(KINDS, 0.0)
    totals["machine"] = (sum(fields) - fields[3] - fields[4]) / TICK  # all but idle and iowait
    own = os.times()
    totals["load generator"] = own.children_user + own.children_system
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            kind = _kind(Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" "))
            if kind:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                totals[kind] += (int(stat[11]) + int(stat[12])) / TICK
        except OSError:
            continue
    return totals


def cores(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Cores in use between two `machine_cpu` readings, by kind; `other` is the machine's rest."""
    used = {k: round((after[k] - before[k]) / seconds, 2) if seconds > 0 else 0.0 for k in ("machine", *KINDS)}
    used["other"] = round(max(0.0, used["machine"] - sum(used[k] for k in KINDS)), 2)
    return used


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT, timeout: float = 60) -> None:
    """Stop a process started in its own session: SIGINT (bin/run's Ctrl-C), then SIGKILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without the service's settings that a scenario sets itself."""
    own = ("DATABASE_URL", "CELERY_BROKER_URL", "PROMETHEUS_MULTIPROC_DIR", "VAR_DIR", "PORT", "HOST")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "EXT_TWILIO_", "PYTEST_")) and k not in own
    }
    return {**env, **extra}


# --- one scenario ----------------------------------------------------------------------------------------


@dataclass
class Scenario:
    system: str
    kind: str  # "baseline", "service" or "skeleton"
    backend: str
    alerts: int
    callers: int
    orgs: int
    accepted: int = 0
    refused: int = 0
    intake_rps: float = 0.0
    intake_p50_ms: float = 0.0
    intake_p99_ms: float = 0.0
    e2e_rate: float = 0.0
    at_twilio: int = 0  # accepted alerts whose recipient got exactly one POST
    missing: int = 0  # accepted alerts that never reached Twilio (within the wait)
    doubled: int = 0  # accepted alerts that reached Twilio more than once
    unexpected: int = 0  # POSTs to a recipient whose call was not accepted
    drained: bool = False
    alert_p50_ms: float = 0.0  # intake's answer → POST at Twilio (≤ 0 for the baseline: it posts before answering)
    alert_p99_ms: float = 0.0
    sent_p50_ms: float = 0.0  # call sent → POST at Twilio: what the person waiting for the text sees
    sent_p99_ms: float = 0.0
    seconds: float = 0.0
    web_cpu_ms_per_call: float = 0.0
    worker_cpu_ms_per_message: float = 0.0
    load_start: float = 0.0
    load_end: float = 0.0
    intake_cores: dict[str, float] = field(default_factory=dict)  # cores by kind while the calls came in
    note: str = ""


def _q(values: list[float], q: int) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def measure(
    scenario: Scenario,
    port: int,
    path: str,
    secret: str,
    orgs: list[Org],
    twilio_url: str,
    cpu: Callable[[], dict[str, float]],
    load_seconds: float,
    drain_seconds: float,
    log: Callable[[str], None],
) -> Scenario:
    """Drive the load at a started system and fill in the scenario's figures."""
    http_get(twilio_url, "/_bench/reset")
    scenario.load_start = os.getloadavg()[0]
    cpu0, machine0 = cpu(), machine_cpu()
    started = time.time()
    calls = drive(port, path, secret, orgs, scenario.alerts, scenario.callers, load_seconds)
    scenario.intake_cores = cores(machine0, machine_cpu(), time.time() - started)
    ok = [c for c in calls if c[1] == 200]
    scenario.accepted, scenario.refused = len(ok), len(calls) - len(ok)
    if ok:
        span = max(c[3] for c in ok) - min(c[2] for c in ok)
        scenario.intake_rps = len(ok) / span if span > 0 else 0.0
        latencies = [(c[3] - c[2]) * 1000 for c in ok]
        scenario.intake_p50_ms, scenario.intake_p99_ms = _q(latencies, 50), _q(latencies, 99)
    cpu_intake = cpu()
    log(
        f"{scenario.system}: {len(ok)} of {scenario.alerts} calls accepted at {scenario.intake_rps:.1f}/s, "
        f"p50 {scenario.intake_p50_ms:.0f} ms, p99 {scenario.intake_p99_ms:.0f} ms; waiting for Twilio"
    )

    # Until the fake Twilio has a POST for every accepted alert (bounded), then a short quiet spell in
    # which a doubled send would still show.
    deadline = time.time() + drain_seconds
    count = http_get(twilio_url, "/_bench/stats")["count"]
    while count < len(ok) and time.time() < deadline:
        time.sleep(0.25)
        count = http_get(twilio_url, "/_bench/stats")["count"]
    scenario.drained = count >= len(ok)
    quiet_until = time.time() + 2.0
    while time.time() < quiet_until:
        time.sleep(0.25)
    cpu1 = cpu()
    scenario.load_end = os.getloadavg()[0]
    arrivals: dict[str, list[float]] = http_get(twilio_url, "/_bench/arrivals")

    accepted = {recipient(c[0]): c for c in ok}
    alert_ms, sent_ms = [], []
    for to, call in accepted.items():
        times = arrivals.get(to, [])
        if not times:
            scenario.missing += 1
            continue
        if len(times) > 1:
            scenario.doubled += 1
        else:
            scenario.at_twilio += 1
        alert_ms.append((min(times) - call[3]) * 1000)
        sent_ms.append((min(times) - call[2]) * 1000)
    scenario.unexpected = sum(len(t) for to, t in arrivals.items() if to not in accepted)
    last = max((t for times in arrivals.values() for t in times), default=started)
    scenario.e2e_rate = len(ok) / (last - started) if scenario.drained and last > started else 0.0
    if not scenario.drained:
        scenario.note = f"{scenario.missing} of {len(ok)} not at Twilio after {drain_seconds:g} s"
    scenario.alert_p50_ms, scenario.alert_p99_ms = _q(alert_ms, 50), _q(alert_ms, 99)
    scenario.sent_p50_ms, scenario.sent_p99_ms = _q(sent_ms, 50), _q(sent_ms, 99)
    scenario.seconds = round(time.time() - started, 1)
    scenario.web_cpu_ms_per_call = (cpu_intake["web"] - cpu0["web"]) * 1000 / max(1, len(ok))
    scenario.worker_cpu_ms_per_message = (cpu1["worker"] - cpu0["worker"]) * 1000 / max(1, len(ok))
    log(
        f"{scenario.system}: end to end {scenario.e2e_rate:.1f} msg/s; alert p50 {scenario.alert_p50_ms:.0f} ms, "
        f"p99 {scenario.alert_p99_ms:.0f} ms; {scenario.at_twilio} once, {scenario.doubled} doubled, "
        f"{scenario.missing} missing, {scenario.unexpected} unexpected"
    )
    return scenario


def run_service(
    backend: str,
    var_dir: Path,
    urls: dict[str, str],
    orgs: list[Org],
    sizes: dict[str, float],
    backend_env: dict[str, str],
    log: Callable[[str], None],
    free_port: Callable[[], int],
    *,
    skeleton: bool = False,
) -> Scenario:
    """`make run` on a backend, from an empty VAR_DIR: migrate, bin/run, the load, Ctrl-C. `skeleton`:
    the same processes serving the skeleton (bench/skeleton.py) instead of the service."""
    dotenv = ROOT / ".env"
    if backend == "embedded" and dotenv.exists():
        named = [line.split("=", 1)[0] for line in dotenv.read_text().splitlines()]
        if {"DATABASE_URL", "CELERY_BROKER_URL"} & set(named):
            raise SystemExit(
                f"{dotenv} sets DATABASE_URL or CELERY_BROKER_URL: `make run` here would not run on the embedded "
                "defaults, so neither can the benchmark's embedded scenario (move them out of .env)"
            )
    shutil.rmtree(var_dir, ignore_errors=True)
    var_dir.mkdir(parents=True)
    from cryptography.fernet import Fernet

    secret = secrets.token_urlsafe(24)
    port = free_port()
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
            "DJANGO_SETTINGS_MODULE": "bench.settings" if skeleton else "config.settings",
            **(
                {"BENCH_SKELETON_ACCOUNTS": json.dumps({o.oid: [o.account_sid, o.auth_token] for o in orgs})}
                if skeleton
                else {}
            ),
            **backend_env,
        }
    )
    label = "embedded defaults" if backend == "embedded" else "DATABASE_URL PostgreSQL + CELERY_BROKER_URL Redis"
    if skeleton:
        label = "Redis broker" if "CELERY_BROKER_URL" in backend_env else "embedded broker"
    scenario = Scenario(
        system=f"skeleton: `make run`'s processes, {label}, nothing of the service's"
        if skeleton
        else f"`make run`, {label}",
        kind="skeleton" if skeleton else "service",
        backend=f"skeleton, {label}" if skeleton else backend,
        alerts=int(sizes["alerts"]),
        callers=int(sizes["callers"]),
        orgs=len(orgs),
    )
    # As `make run`: migrate (without bin/run's PROMETHEUS_MULTIPROC_DIR, which bin/run creates), then bin/run.
    migrate_env = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env=migrate_env, cwd=ROOT, check=True)
    log_path = var_dir / "run.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [str(ROOT / "bin" / "run")], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until(lambda: b"ready." in log_path.read_bytes() and answers(port), 120, f"bin/run ({backend})")
        return measure(
            scenario,
            port,
            "/bench/skeleton/" if skeleton else "/extension/",
            secret,
            orgs,
            urls["twilio"],
            lambda: cpu_by_kind(proc.pid),
            sizes["load_seconds"],
            sizes["drain_seconds"],
            log,
        )
    finally:
        stop_group(proc)


def run_baseline(
    var_dir: Path,
    urls: dict[str, str],
    orgs: list[Org],
    sizes: dict[str, float],
    log: Callable[[str], None],
    free_port: Callable[[], int],
) -> Scenario:
    """bench/baseline.py (lcextension) on gunicorn with 4 sync workers, the same load."""
    var_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(24)
    port = free_port()
    env = clean_env(
        {
            "LC_SHARED_SECRET": secret,
            "LC_API_URL": urls["limacharlie"],
            "TWILIO_API_BASE_URL": urls["twilio"],
            "LC_EPHEMERAL_CREDS": "1",
        }
    )
    scenario = Scenario(
        system="baseline (synchronous: lcextension, gunicorn 4 workers)",
        kind="baseline",
        backend="none",
        alerts=int(sizes["alerts"]),
        callers=int(sizes["callers"]),
        orgs=len(orgs),
    )
    with (var_dir / "baseline.log").open("wb") as out:
        proc = subprocess.Popen(
            [PY, "-m", "gunicorn", "bench.baseline:app", "--workers", "4", "--bind", f"127.0.0.1:{port}"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: answers(port, "/"), 60, "the baseline's gunicorn")
        return measure(
            scenario,
            port,
            "/",
            secret,
            orgs,
            urls["twilio"],
            lambda: cpu_by_kind(proc.pid),
            sizes["load_seconds"],
            sizes["drain_seconds"],
            log,
        )
    finally:
        stop_group(proc, signal.SIGTERM)


def as_dict(scenario: Scenario) -> dict[str, Any]:
    return asdict(scenario)
