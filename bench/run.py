"""`make bench`: the real stack on this machine, measured against the limits it runs on.

Scenarios (BENCH_SCENARIOS, comma-separated; all by default, in the order of ALL_SCENARIOS):

- `baseline`, `e2e-embedded`, `e2e-postgres`: issue 9's harness, "end to end" (bench/e2e.py): the same
  load of signed, gzipped `run` calls (2,000 from 16 keep-alive callers, 20 organisations each with its
  own Twilio account, 2,000 distinct recipients, the fake Twilio answering after 100 ms) at the
  synchronous baseline (bench/baseline.py: lcextension on gunicorn with 4 workers), and at the service
  started exactly as `make run` starts it on the embedded defaults and on PostgreSQL + Redis (its own
  database ext_twilio_bench_e2e and Redis db 11). Intake req/s and p50/p99, end-to-end msg/s, per-alert
  latency (intake's answer → POST at Twilio), every accepted alert at Twilio exactly once, and the
  ratios to the baseline.
- `skeleton-embedded`, `skeleton-redis`: the same load at the skeleton (bench/skeleton.py): `make run`'s
  processes with nothing of the service's, on the embedded broker and on Redis (db 11). The web checks
  the signature and publishes one Celery task per alert; the task POSTs with the service's Twilio client.
  No database, no Hive read, no validation. The end-to-end floor: what no service on this stack (Django
  and DRF in gunicorn, a Celery task per alert, the Twilio SDK) can beat on this machine; the report
  puts it against issue 9's goals beside the service.
- `classic`: the service's parts against their floors, on PostgreSQL (`ext_twilio_bench_load`, dropped
  and created) and Redis db 12 (flushed), gunicorn with deploy/gunicorn.conf.py and Celery workers with
  the thread pool:
  1. Intake: signed, gzipped `run` calls per second (each one answered 200 and persisted, which is
     checked), p50/p99, at 1, 8, 16 and 32 concurrent callers; beside the floor, `/bench/bare/` on the same
     gunicorn (gunzip + lc-ext-sig check + a protocol reply, nothing else; bench/urls.py, which only the
     bench's gunicorn loads, through DJANGO_SETTINGS_MODULE=bench.settings).
     Workers are stopped meanwhile, so the web measurement has the cores to itself.
  2. Delivery: N deliveries committed, then enqueued at once; messages per second until the fake
     Twilio (answering after 100 ms) has received the last one; beside the limit, a bare loop of the
     Twilio SDK with the same processes x threads posting to the same fake.
  3. Cost: CPU ms per 1,000 messages and peak RSS, per process kind, from /proc; worker CPU per
     message and intake CPU per call against their goals (3 ms, 2 ms).
Every figure carries the machine's 1-minute load average when it was taken.

Knobs (environment): BENCH_QUICK=1 (short runs for development), BENCH_SMOKE=1 (tiny: what `make test`
runs to see that the benchmark still runs to its report), BENCH_OWN_REDIS=1 (the classic phase on a
redis-server of its own, on a free port, instead of db BENCH_REDIS_DB of the machine's), BENCH_SCENARIOS, BENCH_RESULTS (folder of the
report, bench/results), BENCH_TWILIO_LATENCY_MS (100), BENCH_E2E_ALERTS (2,000; quick 300),
BENCH_E2E_CALLERS (16), BENCH_E2E_ORGS (20), BENCH_E2E_DRAIN_SECONDS (how long to wait for Twilio to get
every accepted alert: 900; quick 300), BENCH_WORKERS (Celery worker processes, 2), BENCH_WORKER_THREADS
(threads each, 16), BENCH_SECONDS (per intake point), BENCH_MESSAGES (delivery phase),
BENCH_DATABASE_NAME, BENCH_E2E_DATABASE_NAME, BENCH_REDIS_DB (12), BENCH_E2E_REDIS_DB (11),
WEB_CONCURRENCY / WEB_THREADS (gunicorn, as in production). Results: printed, and written to
bench/results/ (.md, .json, .png).
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
VAR = Path(os.environ.get("BENCH_VAR_DIR", str(ROOT / "var" / "bench")))
PY = sys.executable


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")


SMOKE = _flag("BENCH_SMOKE")
QUICK = _flag("BENCH_QUICK") or SMOKE
MODE = "smoke" if SMOKE else "quick" if QUICK else "full"


def _size(name: str, full: str, quick: str, smoke: str) -> str:
    return os.environ.get(name, smoke if SMOKE else quick if QUICK else full)


RESULTS = Path(os.environ.get("BENCH_RESULTS", str(RESULTS)))
# Each skeleton just before the service on the same broker, so the two see the machine alike.
ALL_SCENARIOS = ("baseline", "skeleton-embedded", "e2e-embedded", "skeleton-redis", "e2e-postgres", "classic")
SCENARIOS = [s.strip() for s in os.environ.get("BENCH_SCENARIOS", ",".join(ALL_SCENARIOS)).split(",") if s.strip()]
LATENCY_MS = float(os.environ.get("BENCH_TWILIO_LATENCY_MS", "100"))
WORKERS = int(_size("BENCH_WORKERS", "2", "2", "1"))
WORKER_THREADS = int(_size("BENCH_WORKER_THREADS", "16", "16", "4"))
SECONDS = float(_size("BENCH_SECONDS", "10", "3", "0.5"))
MESSAGES = int(_size("BENCH_MESSAGES", "2000", "300", "20"))
E2E = {
    "alerts": float(_size("BENCH_E2E_ALERTS", "2000", "300", "24")),
    "callers": float(_size("BENCH_E2E_CALLERS", "16", "16", "4")),
    "orgs": float(_size("BENCH_E2E_ORGS", "20", "20", "4")),
    "load_seconds": float(_size("BENCH_E2E_LOAD_SECONDS", "600", "300", "60")),
    "drain_seconds": float(_size("BENCH_E2E_DRAIN_SECONDS", "900", "300", "60")),
}
# 16: issue 9's callers. With the worker stopped, the web alone at that load says how far the intake is
# from the goal's p99 before the worker takes its share of the cores.
CALLERS = (1, 8, 16, 32)
LOAD_AT_START = 0.0  # the machine's 1-minute load average when the run began: other work skews every figure
# Not ext_twilio_bench: the admin benchmark (bench/admin_scale.py) owns that name.
DB_NAME = os.environ.get("BENCH_DATABASE_NAME", "ext_twilio_bench_load")
E2E_DB_NAME = os.environ.get("BENCH_E2E_DATABASE_NAME", "ext_twilio_bench_e2e")
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_URL = f"redis://127.0.0.1:6379/{int(os.environ.get('BENCH_REDIS_DB', '12'))}"
E2E_REDIS_URL = f"redis://127.0.0.1:6379/{int(os.environ.get('BENCH_E2E_REDIS_DB', '11'))}"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the machine's services ----------------------------------------------------------------------


def ensure_services() -> None:
    """Start PostgreSQL and Redis if they are not running (as .ci/run does)."""
    if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"]).returncode != 0:
        version = sorted(os.listdir("/etc/postgresql"))[0]
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=True)
    if subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping"], capture_output=True).returncode != 0:
        subprocess.run(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            check=True,
        )
    for _ in range(60):
        pg = subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"]).returncode == 0
        redis_ok = (
            subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping"], capture_output=True).returncode == 0
        )
        if pg and redis_ok:
            break
        time.sleep(1)


def fresh_database(name: str, redis_url: str) -> None:
    """A new, empty PostgreSQL database of the bench's own and its own Redis db, flushed."""
    import psycopg
    import redis

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    redis.Redis.from_url(redis_url).flushdb()


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- processes ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    out = (VAR / f"{name}.log").open("wb")
    return subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (gunicorn's master and workers; celery's main process)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
    return total


def peak_rss_mb(pids: list[int]) -> float:
    """Sum of each process's peak resident set (VmHWM): the memory the kind needed at its busiest."""
    total_kb = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


# --- the intake load generator ---------------------------------------------------------------------


@dataclass
class Tenant:
    oid: str = field(default_factory=lambda: str(uuid.uuid4()))
    jwt: str = field(default_factory=lambda: "eyJ" + secrets.token_urlsafe(40))
    account_sid: str = field(default_factory=lambda: "AC" + secrets.token_hex(16))
    auth_token: str = field(default_factory=lambda: secrets.token_hex(16))


def run_envelope(tenant: Tenant, n: int) -> bytes:
    envelope = {
        "version": 20221218,
        "idempotency_key": f"bench-{uuid.uuid4()}",
        "request": {
            "org": {"oid": tenant.oid, "jwt": tenant.jwt, "ident": "dr-general/bench"},
            "action": "run",
            "data": {
                "body": f"Detection {n}: suspicious powershell on host-17",
                "from": "+15005550006",
                "to": f"+1500555{n % 10000:04d}",
            },
            "config": {},
            "inv_id": f"inv-{n}",
        },
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def _caller(
    port: int, path: str, secret: str, tenant: Tenant, deadline: float, seed: int, out: list[tuple[int, float]]
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=130)
    n = seed
    while time.time() < deadline:
        n += 1
        body = run_envelope(tenant, n)
        headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "lc-ext-sig": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
        }
        payload = gzip.compress(body, compresslevel=6)
        started = time.perf_counter()
        try:
            conn.request("POST", path, payload, headers)
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=130)
            status = 0
        out.append((status, time.perf_counter() - started))
    conn.close()


def _caller_process(args: tuple[int, str, str, Tenant, float, int, int]) -> list[tuple[int, float]]:
    port, path, secret, tenant, deadline, threads, seed = args
    results: list[list[tuple[int, float]]] = [[] for _ in range(threads)]
    pool = [
        threading.Thread(target=_caller, args=(port, path, secret, tenant, deadline, seed + i * 1_000_000, results[i]))
        for i in range(threads)
    ]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return [r for rs in results for r in rs]


@dataclass
class Load:
    endpoint: str
    callers: int
    seconds: float
    ok: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    load_avg: float = 0.0  # the machine's 1-minute load average at the end of this point


def load(port: int, path: str, secret: str, tenant: Tenant, callers: int, seconds: float, seed: int) -> Load:
    """`callers` concurrent keep-alive connections, spread over up to 4 processes so that the load
    generator's own Python work is not the bottleneck."""
    processes = min(callers, 4)
    per = [callers // processes + (1 if i < callers % processes else 0) for i in range(processes)]
    started = time.time()
    deadline = started + seconds
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(processes) as pool:
        parts = pool.map(
            _caller_process,
            [(port, path, secret, tenant, deadline, per[i], seed + i * 100_000_000) for i in range(processes)],
        )
    elapsed = time.time() - started
    results = [r for part in parts for r in part]
    ok = [latency for status, latency in results if status == 200]
    quantiles = statistics.quantiles(ok, n=100, method="inclusive") if len(ok) >= 2 else [0.0] * 99
    return Load(
        endpoint=path,
        callers=callers,
        seconds=round(elapsed, 2),
        ok=len(ok),
        errors=len(results) - len(ok),
        rps=len(ok) / elapsed,
        p50_ms=quantiles[49] * 1000,
        p99_ms=quantiles[98] * 1000,
        load_avg=os.getloadavg()[0],
    )


def accept_via_intake(port: int, secret: str, tenant: Tenant, key: str, recipients: list[str]) -> None:
    """Signed `run` calls of 20 recipients each (SMS_MAX_RECIPIENTS' default), every one answered 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=130)
    try:
        for n, start_at in enumerate(range(0, len(recipients), 20)):
            envelope = {
                "version": 20221218,
                "idempotency_key": f"{key}-{n}",
                "request": {
                    "org": {"oid": tenant.oid, "jwt": tenant.jwt, "ident": "dr-general/bench"},
                    "action": "run",
                    "data": {
                        "body": "Detection: bench delivery",
                        "from": "+15005550006",
                        "to": ",".join(recipients[start_at : start_at + 20]),
                    },
                    "config": {},
                },
            }
            body = json.dumps(envelope).encode()
            headers = {
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "lc-ext-sig": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
            }
            conn.request("POST", "/extension/", gzip.compress(body), headers)
            response = conn.getresponse()
            answer = response.read()
            if response.status != 200:
                raise RuntimeError(f"the intake answered {response.status}: {answer[:300]!r}")
    finally:
        conn.close()


# --- the Twilio SDK limit ----------------------------------------------------------------------------


def _sdk_process(args: tuple[str, str, str, int, int]) -> int:
    base_url, sid, token, threads, count = args
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    remaining = [count]
    lock = threading.Lock()

    def loop() -> None:
        client = Client(sid, token, http_client=TwilioHttpClient(timeout=10))
        client.api.base_url = base_url
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            client.messages.create(to="+15005550001", from_="+15005550006", body="limit", validity_period=3600)

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return count


def sdk_limit(base_url: str, tenant: Tenant, processes: int, threads: int, count: int) -> tuple[float, float]:
    """Messages per second of a bare loop of the Twilio SDK with the same processes x threads as the
    workers, and its CPU ms per 1,000 messages (the part of a worker's cost that is the SDK's)."""
    per = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    ctx = multiprocessing.get_context("fork")
    cpu0 = _children_cpu()
    started = time.time()
    pool = ctx.Pool(processes)
    pool.map(
        _sdk_process, [(base_url, tenant.account_sid, tenant.auth_token, threads, per[i]) for i in range(processes)]
    )
    elapsed = time.time() - started
    pool.close()
    pool.join()  # reaped, so their CPU time is in RUSAGE_CHILDREN
    return count / elapsed, (_children_cpu() - cpu0) * 1000 / count * 1000


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def twilio_stats(base_url: str, reset: bool = False) -> dict[str, Any]:
    host, port = base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/_bench/reset" if reset else "/_bench/stats")
    data = json.loads(conn.getresponse().read())
    conn.close()
    return data


# --- the benchmark --------------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    pg = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip() or "PostgreSQL ?"
    rd = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split(" sha")[0]
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {pg}, {rd}"
    )


def main() -> int:
    VAR.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    unknown = set(SCENARIOS) - set(ALL_SCENARIOS)
    if unknown:
        raise SystemExit(f"BENCH_SCENARIOS: unknown {', '.join(sorted(unknown))}")
    log(
        f"{MODE} run of {', '.join(SCENARIOS)}: end to end {E2E['alerts']:g} alerts from {E2E['callers']:g} callers "
        f"and {E2E['orgs']:g} organisations; {SECONDS:g} s per intake point, {MESSAGES} messages, "
        f"Twilio latency {LATENCY_MS:g} ms, {WORKERS} workers x {WORKER_THREADS} threads"
    )
    if {"e2e-postgres", "skeleton-redis", "classic"} & set(SCENARIOS):
        ensure_services()
    global LOAD_AT_START
    LOAD_AT_START = os.getloadavg()[0]

    from bench import e2e

    global REDIS_URL
    processes: list[subprocess.Popen[bytes]] = []
    if _flag("BENCH_OWN_REDIS") and "classic" in SCENARIOS:
        # A Redis of the run's own (the smoke run in the tests: two test runs at once must not flush each
        # other's queue), on a free port, gone with the run.
        redis_port = free_port()
        processes.append(
            start(
                ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                {**os.environ},
                "redis",
            )
        )
        REDIS_URL = f"redis://127.0.0.1:{redis_port}/0"

        def redis_up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", redis_port)) == 0

        wait_until(redis_up, 20, "the run's own Redis")

    tenant = Tenant()
    orgs = [e2e.Org() for _ in range(int(E2E["orgs"]))]
    tenants = VAR / "tenants.json"
    tenants.write_text(json.dumps([asdict(tenant), *(asdict(o) for o in orgs)]))
    fakes = start(
        [PY, "-m", "bench.fakes", "--twilio-latency-ms", str(LATENCY_MS), "--tenants", str(tenants)],
        {**os.environ},
        "fakes",
    )
    processes.append(fakes)
    try:
        urls = wait_until(lambda: (VAR / "fakes.log").read_text().strip().splitlines()[:1], 30, "the fakes")
        urls = json.loads(urls[0])
        outcome: dict[str, Any] = {
            "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
            "mode": MODE,
            "scenarios": SCENARIOS,
            "settings": {"twilio_latency_ms": LATENCY_MS, "end_to_end": E2E},
            "end_to_end": [],
        }
        for name in SCENARIOS:
            if name == "baseline":
                scenario = e2e.run_baseline(VAR / "e2e-baseline", urls, orgs, E2E, log, free_port)
            elif name == "e2e-embedded":
                scenario = e2e.run_service("embedded", VAR / "e2e-embedded", urls, orgs, E2E, {}, log, free_port)
            elif name == "e2e-postgres":
                fresh_database(E2E_DB_NAME, E2E_REDIS_URL)
                backend = {
                    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{E2E_DB_NAME}",
                    "CELERY_BROKER_URL": E2E_REDIS_URL,
                }
                try:
                    scenario = e2e.run_service(
                        "postgres", VAR / "e2e-postgres", urls, orgs, E2E, backend, log, free_port
                    )
                finally:
                    if SMOKE:
                        drop_database(E2E_DB_NAME)
            elif name == "skeleton-embedded":
                scenario = e2e.run_service(
                    "embedded", VAR / "skeleton-embedded", urls, orgs, E2E, {}, log, free_port, skeleton=True
                )
            elif name == "skeleton-redis":
                import redis

                redis.Redis.from_url(E2E_REDIS_URL).flushdb()
                scenario = e2e.run_service(
                    "embedded",
                    VAR / "skeleton-redis",
                    urls,
                    orgs,
                    E2E,
                    {"CELERY_BROKER_URL": E2E_REDIS_URL},
                    log,
                    free_port,
                    skeleton=True,
                )
            else:
                continue
            outcome["end_to_end"].append(e2e.as_dict(scenario))
        if "classic" in SCENARIOS:
            classic = _classic(tenant, urls, processes)
            outcome["settings"].update(classic.pop("settings"))
            outcome.update(classic)
        outcome["load_average"] = {"start": LOAD_AT_START, "end": os.getloadavg()[0]}
        report(outcome)
    finally:
        for proc in reversed(processes):
            stop(proc)
    return 0


def _classic(tenant: Tenant, urls: dict[str, str], processes: list[subprocess.Popen[bytes]]) -> dict[str, Any]:
    """The parts against their floors, on PostgreSQL + Redis of the bench's own."""
    from cryptography.fernet import Fernet

    fresh_database(DB_NAME, REDIS_URL)
    shared_secret = secrets.token_urlsafe(24)
    multiproc = VAR / "prometheus"
    subprocess.run(["rm", "-rf", str(multiproc)], check=True)
    multiproc.mkdir()
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "EXT_TWILIO_", "PYTEST_"))},
        "SECRET_KEY": secrets.token_urlsafe(40),
        "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "LC_SHARED_SECRET": shared_secret,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
        "CELERY_BROKER_URL": REDIS_URL,
        "TWILIO_API_BASE_URL": urls["twilio"],
        "LC_API_URL": urls["limacharlie"],
        "VAR_DIR": str(VAR),
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "INFO",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        # The bench sends thousands of texts from one organisation and one Twilio account, and compares
        # with a bare SDK loop at the same concurrency: flood control's organisation limit and the
        # per-account concurrency cap would measure the policy, not the machinery. Both are off here.
        "FLOOD_ORG_LIMIT": "0",
        "TWILIO_MAX_CONCURRENT_PER_ACCOUNT": "0",
    }
    os.environ.update(env)  # this process uses the bench database too (to count and to enqueue)
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env=env, cwd=ROOT, check=True)
    try:
        return _measure(env, tenant, shared_secret, urls, port, processes)
    finally:
        from django.db import connections

        connections.close_all()
        if SMOKE:
            drop_database(DB_NAME)


def _measure(
    env: dict[str, str],
    tenant: Tenant,
    shared_secret: str,
    urls: dict[str, str],
    port: int,
    processes: list[subprocess.Popen[bytes]],
) -> dict[str, Any]:
    import django

    django.setup()
    from django.db import connections

    from deliveries.models import AlertRequest, Delivery

    # The service's settings with bench/urls.py, which adds /bench/bare/ (the floor) to the service's URLs.
    web = start(
        [PY, "-m", "gunicorn", "config.wsgi", "--config", "deploy/gunicorn.conf.py"],
        {**env, "DJANGO_SETTINGS_MODULE": "bench.settings"},
        "web",
    )
    processes.append(web)

    def web_up() -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False

    wait_until(web_up, 60, "gunicorn")
    connections.close_all()  # the load generator forks: no inherited database connection

    # 1. Intake, with no worker running: the sends pile up in Redis and are flushed afterwards.
    intake: list[Load] = []
    web_cost: dict[str, float] = {}
    seed = 0
    for callers in CALLERS:
        for path in ("/bench/bare/", "/extension/"):
            seed += 1_000_000_000
            load(port, path, shared_secret, tenant, callers, min(1.0, SECONDS), seed)  # warm-up
            connections.close_all()
            before = AlertRequest.objects.count()
            connections.close_all()
            cpu0 = cpu_seconds(process_tree(web.pid))
            seed += 1_000_000_000
            result = load(port, path, shared_secret, tenant, callers, SECONDS, seed)
            cpu1 = cpu_seconds(process_tree(web.pid))
            persisted = AlertRequest.objects.count() - before
            connections.close_all()
            cost = (cpu1 - cpu0) * 1000 / max(1, result.ok) * 1000
            if path == "/extension/" and persisted < result.ok:
                raise RuntimeError(f"{result.ok} calls answered 200 but only {persisted} persisted")
            if callers == max(CALLERS):
                web_cost["cpu_ms_per_1000" if path == "/extension/" else "floor_cpu_ms_per_1000"] = cost
                if path == "/extension/":
                    web_cost["load_avg"] = result.load_avg
            intake.append(result)
            log(
                f"intake {path:14} {callers:>2} callers: {result.rps:7.1f}/s  p50 {result.p50_ms:6.1f} ms  "
                f"p99 {result.p99_ms:6.1f} ms  ({result.ok} ok, {result.errors} errors; load {result.load_avg:.1f})"
            )
    web_cost["peak_rss_mb"] = peak_rss_mb(process_tree(web.pid))
    web_cost["processes"] = len(process_tree(web.pid))
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()

    # 2. Delivery: workers up and ready, N committed deliveries enqueued, then the workers are told to
    # consume: the clock starts with a full queue, so neither worker start-up nor this process's
    # publishing rate is in the figure.
    from config.celery import app as celery_app

    queue = celery_app.conf.task_default_queue
    workers = []
    for i in range(WORKERS):
        workers.append(
            start(
                [
                    PY,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "--pool=threads",
                    f"--concurrency={WORKER_THREADS}",
                    "--loglevel=INFO",
                    "--without-mingle",
                    "--without-gossip",
                    "-n",
                    f"bench{i}@%h",
                    "-Q",
                    "bench-hold",
                ],
                env,
                f"worker{i}",
            )
        )
    processes.extend(workers)
    for i in range(WORKERS):
        worker_log = VAR / f"worker{i}.log"

        def ready(path: Path = worker_log) -> bool:
            return b"ready." in path.read_bytes()

        wait_until(ready, 60, f"worker {i}")
    names = [f"bench{i}@{socket.gethostname()}" for i in range(WORKERS)]
    celery_app.control.add_consumer(queue, destination=names, reply=True)
    # Deliveries are made as LimaCharlie makes them, through the intake (signed `run` calls, 20 recipients
    # each), so that this phase depends on no internal API of the service.
    accept_via_intake(port, shared_secret, tenant, "bench-warmup", [f"+1500556{i:04d}" for i in range(20)])
    wait_until(lambda: twilio_stats(urls["twilio"])["count"] >= 20, 60, "the warm-up deliveries")
    wait_until(
        lambda: Delivery.objects.filter(idempotency_key__startswith="bench-warmup-", status="queued").count() == 20,
        60,
        "the warm-up deliveries recorded",
    )
    celery_app.control.cancel_consumer(queue, destination=names, reply=True)
    twilio_stats(urls["twilio"], reset=True)
    # Committed and enqueued (the intake enqueues on commit, before it answers), with no worker consuming.
    accept_via_intake(
        port, shared_secret, tenant, "bench-delivery", [f"+1{2_000_000_000 + i:010d}" for i in range(MESSAGES)]
    )
    connections.close_all()
    worker_pids = [p for w in workers for p in process_tree(w.pid)]
    cpu0 = cpu_seconds(worker_pids)
    started = time.time()
    celery_app.control.add_consumer(queue, destination=names, reply=True)
    wait_until(lambda: twilio_stats(urls["twilio"])["count"] >= MESSAGES, 600, "the deliveries")
    last = twilio_stats(urls["twilio"])["last_at"]
    delivered_rate = MESSAGES / (last - started)
    wait_until(
        lambda: (
            Delivery.objects.filter(idempotency_key__startswith="bench-delivery-", status="queued").count() == MESSAGES
        ),
        60,
        "every delivery recorded as queued",
    )
    cpu1 = cpu_seconds(worker_pids)
    worker_cost = {
        "cpu_ms_per_1000": (cpu1 - cpu0) * 1000 / MESSAGES * 1000,
        "peak_rss_mb": peak_rss_mb(worker_pids),
        "processes": len(worker_pids),
    }
    delivery_load = os.getloadavg()[0]
    worker_cost["load_avg"] = delivery_load
    log(f"delivery: {MESSAGES} messages at {delivered_rate:.1f}/s (load average {delivery_load:.1f})")
    for w in workers:
        stop(w, timeout=60)
    connections.close_all()

    twilio_stats(urls["twilio"], reset=True)
    limit, limit_cpu = sdk_limit(urls["twilio"], tenant, WORKERS, WORKER_THREADS, MESSAGES)
    log(f"Twilio SDK loop: {limit:.1f}/s")

    return {
        "settings": {
            "seconds_per_intake_point": SECONDS,
            "messages": MESSAGES,
            "celery": f"{WORKERS} processes x {WORKER_THREADS} threads (--pool=threads)",
            "gunicorn": gunicorn_settings(env),
        },
        "intake": [asdict(r) for r in intake],
        "delivery": {
            "messages": MESSAGES,
            "rate": delivered_rate,
            "limit": limit,
            "load_avg": delivery_load,
            "limit_load_avg": os.getloadavg()[0],
        },  # fmt: skip
        "cost": {
            "web": web_cost,
            "worker": worker_cost,
            "sdk_loop": {"cpu_ms_per_1000": limit_cpu, "processes": WORKERS},
        },
    }


def gunicorn_settings(env: dict[str, str]) -> str:
    out = subprocess.run(
        [
            PY,
            "-c",
            "import runpy; c = runpy.run_path('deploy/gunicorn.conf.py'); "
            "print(c['workers'], c['threads'], c['worker_class'])",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.split()
    return f"{out[0]} workers x {out[1]} threads ({out[2]}), deploy/gunicorn.conf.py"


# --- the report -----------------------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "met" if met else "missed"


# The service on a backend, and the skeleton on the same broker.
_SKELETON_OF = {"embedded": "skeleton, embedded broker", "postgres": "skeleton, Redis broker"}


def _against_skeleton(scenarios: list[dict[str, Any]]) -> list[str]:
    """The service as a multiple of its skeleton on the same broker, in the same run: what its own work
    costs, in figures that depend less on the machine than milliseconds do."""
    by_backend = {s["backend"]: s for s in scenarios}
    pairs = [(by_backend[b], by_backend[k]) for b, k in _SKELETON_OF.items() if b in by_backend and k in by_backend]
    if not pairs:
        return []

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}×" if b else "–"

    lines = [
        "",
        "The service against its skeleton on the same broker (service ÷ skeleton):",
        "",
        "| system | intake req/s | intake p99 | end-to-end msg/s | web CPU per call | worker CPU per message |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s, k in pairs:
        lines.append(
            f"| {s['system']} | {ratio(s['intake_rps'], k['intake_rps'])} | "
            f"{ratio(s['intake_p99_ms'], k['intake_p99_ms'])} | {ratio(s['e2e_rate'], k['e2e_rate'])} | "
            f"{ratio(s['web_cpu_ms_per_call'], k['web_cpu_ms_per_call'])} | "
            f"{ratio(s['worker_cpu_ms_per_message'], k['worker_cpu_ms_per_message'])} |"
        )
    return lines


def end_to_end_lines(result: dict[str, Any]) -> list[str]:
    """Issue 9's table: each system under the same load, with its ratios to the synchronous baseline."""
    scenarios = result.get("end_to_end") or []
    if not scenarios:
        return []
    e2e = result["settings"]["end_to_end"]
    base = next((s for s in scenarios if s["kind"] == "baseline"), None)
    lines = [
        f"End to end: {e2e['alerts']:g} signed, gzipped `run` calls from {e2e['callers']:g} keep-alive callers, "
        f"{e2e['orgs']:g} organisations each with its own Twilio account, one recipient per alert; the fake Twilio "
        f"answers after {result['settings']['twilio_latency_ms']:g} ms. `make run` as it starts (bin/run: gunicorn "
        "+ two Celery workers, the first with beat, sharing the cores), default settings. Alert latency: from the intake's "
        "200 answer to the POST's arrival at Twilio (the baseline posts before it answers, so its figure is "
        "negative; the column after it counts from the call's start).",
        "",
        "| system | intake req/s | p50 / p99 ms | end-to-end msg/s | alert latency p50 / p99 ms | call → Twilio "
        "p99 ms | at Twilio exactly once | intake × baseline | end to end × baseline | web CPU ms per call "
        "| worker CPU ms per message | load avg (1 min) start / end |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for s in scenarios:
        once = f"{s['at_twilio']} of {s['accepted']}"
        if s["doubled"] or s["missing"] or s["unexpected"] or s["refused"]:
            once += (
                f" ({s['missing']} missing, {s['doubled']} doubled, {s['unexpected']} unexpected, "
                f"{s['refused']} calls refused)"
            )
        if base and s is not base and base["intake_rps"] and base["e2e_rate"]:
            ratios = f"{s['intake_rps'] / base['intake_rps']:.1f}× | {s['e2e_rate'] / base['e2e_rate']:.1f}×"
        else:
            ratios = "1.0× | 1.0×" if s is base else "– | –"
        worker = f"{s['worker_cpu_ms_per_message']:.1f}" if s["kind"] != "baseline" else "–"
        lines.append(
            f"| {s['system']} | {s['intake_rps']:.1f} | {s['intake_p50_ms']:.0f} / {s['intake_p99_ms']:.0f} | "
            f"{s['e2e_rate']:.1f} | {s['alert_p50_ms']:.0f} / {s['alert_p99_ms']:.0f} | {s['sent_p99_ms']:.0f} | "
            f"{once} | {ratios} | {s['web_cpu_ms_per_call']:.1f} | {worker} | "
            f"{s['load_start']:.1f} / {s['load_end']:.1f} |"
        )
    if base:
        lines += ["", "| goal (issue 9), per backend | " + " | ".join(s["backend"] for s in scenarios if s is not base)
                  + " |", "|---|" + "---|" * (len(scenarios) - 1)]  # fmt: skip
        services_ = [s for s in scenarios if s is not base]

        def row(label: str, check: Callable[[dict[str, Any]], bool]) -> None:
            lines.append(f"| {label} | " + " | ".join(_verdict(check(s)) for s in services_) + " |")

        row(
            "end to end ≥ 3× the baseline, every accepted alert at Twilio once",
            lambda s: (
                bool(base["e2e_rate"])
                and s["e2e_rate"] >= 3 * base["e2e_rate"]
                and s["at_twilio"] == s["accepted"] == s["alerts"]
            ),
        )
        row(
            f"intake ≥ 10× the baseline, p99 ≤ 50 ms at {e2e['callers']:g} callers",
            lambda s: (
                bool(base["intake_rps"]) and s["intake_rps"] >= 10 * base["intake_rps"] and s["intake_p99_ms"] <= 50
            ),
        )
        row("alert latency p99 ≤ 1 s", lambda s: s["drained"] and s["alert_p99_ms"] <= 1000)
        if any(s["kind"] == "skeleton" for s in scenarios):
            lines += [
                "",
                "The skeleton's columns are the floor (bench/skeleton.py): `make run`'s processes with nothing of the "
                "service's: the signature check, one Celery task per alert and the POST with the service's Twilio "
                "client. A goal it misses here, no service built on this stack meets on this machine.",
            ]
    lines += _against_skeleton(scenarios)
    measured = [s for s in scenarios if s.get("intake_cores")]
    if measured:
        lines += [
            "",
            "While the calls came in, the machine's cores in use (from /proc), by what used them: every core's busy "
            "time, then the web and worker processes, this benchmark's load generator, its fake Twilio and "
            "LimaCharlie, the database and broker servers, and the rest.",
            "",
            "| system | machine | web | worker | load generator | fakes | PostgreSQL | Redis | other |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in measured:
            c = s["intake_cores"]
            lines.append(
                f"| {s['system']} | {c['machine']:.2f} | {c['web']:.2f} | {c['worker']:.2f} | "
                f"{c['load generator']:.2f} | {c['fakes']:.2f} | {c['PostgreSQL']:.2f} | {c['Redis']:.2f} | "
                f"{c['other']:.2f} |"
            )
    return lines


def classic_lines(result: dict[str, Any]) -> list[str]:
    if "intake" not in result:
        return []
    intake = {(r["endpoint"], r["callers"]): r for r in result["intake"]}
    lines = [
        f"gunicorn: {result['settings']['gunicorn']}; Celery: {result['settings']['celery']}; "
        f"fake Twilio answers after {result['settings']['twilio_latency_ms']:g} ms.",
        "",
        "| Intake (`run`, signed + gzipped) | callers | req/s | p50 ms | p99 ms | floor req/s (bare) | floor p99 ms "
        "| ratio to floor | goal | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for callers in CALLERS:
        svc, bare = intake[("/extension/", callers)], intake[("/bench/bare/", callers)]
        ratio = svc["rps"] / bare["rps"] if bare["rps"] else 0
        # At 16 callers, issue 9's p99 (its goal holds while the worker sends; here the worker is stopped).
        goal = "≥ 0.50" + {16: ", p99 ≤ 50 ms with no worker", 32: ", p99 < 50 ms"}.get(callers, "")
        met = ratio >= 0.5 and (callers not in (16, 32) or svc["p99_ms"] <= 50)
        lines.append(
            f"| accepted and persisted | {callers} | {svc['rps']:.0f} | {svc['p50_ms']:.1f} | "
            f"{svc['p99_ms']:.1f} | {bare['rps']:.0f} | {bare['p99_ms']:.1f} | {ratio:.2f} | "
            f"{goal}: {_verdict(met)} | {svc.get('load_avg', 0):.1f} |"
        )
    d = result["delivery"]
    ratio = d["rate"] / d["limit"] if d["limit"] else 0
    lines += [
        "",
        "| Delivery (accepted → received by fake Twilio) | messages | msg/s | limit (bare Twilio SDK loop) msg/s "
        "| ratio to limit | goal | load avg |",
        "|---|---:|---:|---:|---:|---|---:|",
        f"| {result['settings']['celery']} | {d['messages']} | {d['rate']:.0f} | {d['limit']:.0f} | {ratio:.2f} | "
        f"≥ 0.50: {_verdict(ratio >= 0.5)} | {d.get('load_avg', 0):.1f} |",
        "",
        "| Cost per process kind | processes | CPU ms per 1,000 messages | peak RSS (sum of processes) MB "
        "| baseline CPU ms per 1,000 | ratio to baseline | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    web, worker, sdk = result["cost"]["web"], result["cost"]["worker"], result["cost"]["sdk_loop"]
    lines.append(
        f"| web (gunicorn; `run` calls at {max(CALLERS)} callers) | {web['processes']} | "
        f"{web['cpu_ms_per_1000']:.0f} | {web['peak_rss_mb']:.0f} | {web['floor_cpu_ms_per_1000']:.0f} "
        f"(bare endpoint) | {web['cpu_ms_per_1000'] / web['floor_cpu_ms_per_1000']:.1f}× | "
        f"{web.get('load_avg', 0):.1f} |"
    )
    lines.append(
        f"| worker (Celery, thread pool) | {worker['processes']} | {worker['cpu_ms_per_1000']:.0f} | "
        f"{worker['peak_rss_mb']:.0f} | {sdk['cpu_ms_per_1000']:.0f} (bare SDK loop) | "
        f"{worker['cpu_ms_per_1000'] / sdk['cpu_ms_per_1000']:.1f}× | {worker.get('load_avg', 0):.1f} |"
    )
    worker_ms, web_ms = worker["cpu_ms_per_1000"] / 1000, web["cpu_ms_per_1000"] / 1000
    lines += [
        "",
        f"- Worker CPU per message: {worker_ms:.1f} ms (goal ≤ 3 ms: {_verdict(worker_ms <= 3)}; "
        f"load average {worker.get('load_avg', 0):.1f}).",
        f"- Intake CPU per call: {web_ms:.1f} ms (goal ≤ 2 ms: {_verdict(web_ms <= 2)}; "
        f"load average {web.get('load_avg', 0):.1f}).",
    ]
    return lines


def report(result: dict[str, Any]) -> None:
    lines = [
        f"Run {result['when']} ({result['mode']}) on {result['machine']}; 1-minute load average "
        f"{result['load_average']['start']:.1f} at the start, {result['load_average']['end']:.1f} at the end "
        f"(other work on the machine).",
        "",
    ]
    e2e = end_to_end_lines(result)
    classic = classic_lines(result)
    lines += e2e + ([""] if e2e and classic else []) + classic
    table = "\n".join(lines)
    print("\n" + table + "\n", flush=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    names = (
        [f"latest-{result['mode']}"]
        if result["mode"] == "smoke"
        else [f"{stamp}-{result['mode']}", f"latest-{result['mode']}"]
    )
    for name in names:
        (RESULTS / f"{name}.md").write_text(table + "\n")
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    if classic:
        chart(result, RESULTS / f"latest-{result['mode']}.png")
    log(f"written to {RESULTS}/latest-{result['mode']}.* (md, json, and png when matplotlib is installed)")


def chart(result: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import logging

        import matplotlib.pyplot as plt

        logging.getLogger("matplotlib").setLevel(logging.WARNING)
    except ImportError:
        log("matplotlib is not installed (pip install -r bench/requirements.txt): no chart")
        return
    intake = {(r["endpoint"], r["callers"]): r for r in result["intake"]}
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 4.2))
    x = range(len(CALLERS))
    width = 0.38
    left.bar(
        [i - width / 2 for i in x],
        [intake[("/bench/bare/", c)]["rps"] for c in CALLERS],
        width,
        label="floor: bare signed endpoint",
        color="#bbbbbb",
    )
    left.bar(
        [i + width / 2 for i in x],
        [intake[("/extension/", c)]["rps"] for c in CALLERS],
        width,
        label="intake: run accepted + persisted",
        color="#1f77b4",
    )
    left.set_xticks(list(x), [f"{c} callers" for c in CALLERS])
    left.set_ylabel("requests / s")
    left.set_title("Intake throughput")
    left.legend(fontsize=8)
    middle.plot(
        [str(c) for c in CALLERS], [intake[("/extension/", c)]["p99_ms"] for c in CALLERS], "o-", label="intake p99"
    )
    middle.plot(
        [str(c) for c in CALLERS], [intake[("/extension/", c)]["p50_ms"] for c in CALLERS], "o--", label="intake p50"
    )
    middle.plot(
        [str(c) for c in CALLERS],
        [intake[("/bench/bare/", c)]["p99_ms"] for c in CALLERS],
        "s:",
        color="#999999",
        label="floor p99",
    )
    middle.axhline(50, color="red", linewidth=0.8, label="goal: p99 < 50 ms at 32")
    middle.set_xlabel("concurrent callers")
    middle.set_ylabel("ms")
    middle.set_title("Intake latency")
    middle.legend(fontsize=8)
    d = result["delivery"]
    right.bar(
        ["limit: Twilio SDK loop", "service: accepted → Twilio"], [d["limit"], d["rate"]], color=["#bbbbbb", "#2ca02c"]
    )
    right.axhline(d["limit"] / 2, color="red", linewidth=0.8, label="goal: half the limit")
    right.set_ylabel("messages / s")
    right.set_title(f"Delivery, Twilio answering in {result['settings']['twilio_latency_ms']:g} ms")
    right.legend(fontsize=8)
    fig.suptitle(f"ext-twilio bench {result['when']} ({result['mode']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
