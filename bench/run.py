"""`make bench`: the service end to end against the synchronous baseline, on both backends, in one run.

The same load (bench/e2e.py: BENCH_ALERTS signed, gzipped `run` calls from 16 keep-alive callers and 20
organisations, each with its own Twilio account, one recipient per alert; the fake Twilio answers after
100 ms) goes first to the synchronous baseline (bench/baseline.py), then to the service as `make run` starts
it, on each backend:

- `embedded`: the defaults, SQLite and the filesystem broker in a VAR_DIR of its own (var/bench/embedded);
- `postgres`: DATABASE_URL = the PostgreSQL database ext_twilio_bench_e2e (dropped and created) and
  CELERY_BROKER_URL = Redis db 11 (flushed); PostgreSQL and Redis are started if they are not running.

Each backend runs twice, from scratch: without events for LimaCharlie, then with them (`<backend>+events`:
its organisations subscribed, so the service makes their webhook adapters through the fake LimaCharlie,
LC_HOOK_BASE_URL at the fake's hook, and every event kind chosen, `delivered` included, so every alert
makes one when Twilio reports its text delivered).

It prints two tables and an OK or REGRESSION line per check (bench/report.py) and exits 1 on a regression.

Environment: BENCH_ALERTS (2000), BENCH_BACKENDS (`embedded,postgres`), BENCH_RECORD=1 (write the run's
rows into docs/benchmarks.md's recorded table), BENCH_VAR_DIR (var/bench: every process's log, and
result.json with each system's figures and the POSTs Twilio received, by recipient).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench import report
from bench.e2e import PY, ROOT, Measured, Org, System, measure, start_baseline, start_service, stop_group, wait_until
from bench.events import subscribe

VAR = Path(os.environ.get("BENCH_VAR_DIR", str(ROOT / "var" / "bench")))
DOC = ROOT / "docs" / "benchmarks.md"
BACKENDS = ("embedded", "postgres")
CALLERS, ORGS, TWILIO_LATENCY_MS = 16, 20, 100
DATABASE = "ext_twilio_bench_e2e"
REDIS_URL = "redis://127.0.0.1:6379/11"
EVENTS_SUFFIX = "+events"  # the name of a backend's run with events on


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _up(command: list[str]) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


def ensure_services() -> None:
    """Start PostgreSQL and Redis on 127.0.0.1 if they are not running (as .ci/run does)."""
    pg, redis = ["pg_isready", "-h", "127.0.0.1", "-q"], ["redis-cli", "-h", "127.0.0.1", "ping"]
    if not _up(pg):
        version = sorted(os.listdir("/etc/postgresql"))[0]
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=True)
    if not _up(redis):
        subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--save", ""], check=True)
    wait_until(lambda: _up(pg) and _up(redis), 60, "PostgreSQL and Redis")


def fresh_postgres() -> dict[str, str]:
    """The bench's own PostgreSQL database, new and empty, and its own Redis db, flushed."""
    import psycopg
    import redis

    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    redis.Redis.from_url(REDIS_URL).flushdb()
    return {"DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DATABASE}", "CELERY_BROKER_URL": REDIS_URL}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_fakes(orgs: list[Org]) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    tenants, output = VAR / "tenants.json", VAR / "fakes.log"
    tenants.write_text(json.dumps([asdict(org) for org in orgs]))
    args = [PY, "-m", "bench.fakes", "--twilio-latency-ms", str(TWILIO_LATENCY_MS), "--tenants", str(tenants)]
    with output.open("wb") as out:
        fakes = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=out, start_new_session=True)
    try:
        first = wait_until(lambda: output.read_text().strip().splitlines()[:1], 30, f"the fakes (see {output})")
    except BaseException:
        stop_group(fakes, signal.SIGTERM)
        raise
    return fakes, json.loads(first[0])


def _logged(m: Measured) -> Measured:
    events = f"; {m.hook_events} events in {m.hook_posts} POSTs to the hook" if m.events else ""
    log(
        f"{m.system}: {m.accepted} of {m.alerts} calls accepted, {m.once} at Twilio once, {m.rate:.1f} alerts/s "
        f"end to end; CPU per message: web {m.web_cpu_ms:.1f} ms, worker {m.worker_cpu_ms:.1f} ms{events}"
    )
    return m


def _service(backend: str, events: bool, orgs: list[Org], urls: dict[str, str], alerts: int) -> Measured:
    """One run of the service from scratch on `backend`: with `events`, its organisations subscribed first."""
    name = f"{backend}{EVENTS_SUFFIX if events else ''}"
    log(f"{name}: migrate, bin/run, {'subscribe, ' if events else ''}{alerts} alerts from {CALLERS} callers")
    env = fresh_postgres() if backend == "postgres" else {}
    # A VAR_DIR of letters: the embedded database's URL is built from it.
    system: System = start_service(VAR / name.replace(EVENTS_SUFFIX, "-events"), urls, free_port(), env, events)
    if events:
        try:
            subscribe(system, orgs, urls["limacharlie"])
        except BaseException:
            stop_group(system.proc, system.stop_signal)
            raise
    return _logged(measure(name, system, orgs, urls, alerts, CALLERS))


def run_all(alerts: int, backends: list[str]) -> tuple[Measured, list[Measured], list[Measured]]:
    """The baseline, then the service on each backend without events and with them, one at a time, against
    the same fakes."""
    orgs = [Org() for _ in range(ORGS)]
    fakes, urls = start_fakes(orgs)
    try:
        log(f"baseline: {alerts} alerts from {CALLERS} callers")
        system = start_baseline(VAR / "baseline", urls, free_port())
        baseline = _logged(measure("baseline", system, orgs, urls, alerts, CALLERS))
        services, with_events = [], []
        for backend in backends:
            services.append(_service(backend, False, orgs, urls, alerts))
            with_events.append(_service(backend, True, orgs, urls, alerts))
    finally:
        stop_group(fakes, signal.SIGTERM)
    return baseline, services, with_events


def machine(load_average: float) -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Recorded {when} on {os.cpu_count()} cores ({model}); 1-minute load average {load_average:.1f} at the start."
    )


def main() -> int:
    alerts = int(os.environ.get("BENCH_ALERTS", "2000"))
    backends = [b.strip() for b in os.environ.get("BENCH_BACKENDS", ",".join(BACKENDS)).split(",") if b.strip()]
    if not backends or set(backends) - set(BACKENDS):
        raise SystemExit(f"BENCH_BACKENDS: one or more of {', '.join(BACKENDS)}, got {backends}")
    VAR.mkdir(parents=True, exist_ok=True)
    if "postgres" in backends:
        ensure_services()
    load_average = os.getloadavg()[0]
    baseline, services, with_events = run_all(alerts, backends)
    measured = (baseline, *services, *with_events)
    (VAR / "result.json").write_text(json.dumps([asdict(m) for m in measured], indent=1) + "\n")

    rows = [report.Row(m.system, alerts, m.rate, baseline.rate, m.web_cpu_ms, m.worker_cpu_ms) for m in services]
    events_rows = [_events_row(off, on) for off, on in zip(services, with_events, strict=True)]
    delivered = [_delivered(m) for m in (*services, *with_events)]
    delivered += [report.events_check(m.system, alerts, m.events_once, m.hook_events) for m in with_events]
    document = DOC.read_text() if DOC.exists() else ""
    lines = delivered + report.checks(rows, report.recorded_cpu(document)) + report.events_checks(events_rows)
    tables = f"{report.table(rows)}\n\n{report.events_table(events_rows)}"
    print(f"\n{tables}\n\n" + "\n".join(lines), flush=True)
    if os.environ.get("BENCH_RECORD", "") not in ("", "0"):
        if any(line.startswith("REGRESSION") for line in delivered):
            log(f"not recorded in {DOC}: not every alert reached Twilio (or its event the hook) exactly once")
        else:
            DOC.write_text(report.record(document, rows, machine(load_average), events_rows))
            log(f"recorded in {DOC}")
    return 1 if any(line.startswith("REGRESSION") for line in lines) else 0


def _delivered(m: Measured) -> str:
    return report.delivery_check(m.system, m.alerts, m.once, m.missing, m.doubled, m.unexpected)


def _events_row(off: Measured, on: Measured) -> report.EventsRow:
    per_alert = 1 / max(1, on.accepted)
    return report.EventsRow(
        backend=off.system,
        alerts=on.alerts,
        without=off.rate,
        service=on.rate,
        cpu_ms=on.web_cpu_ms + on.worker_cpu_ms,
        events=on.hook_events * per_alert,
        posts=on.hook_posts * per_alert,
    )


if __name__ == "__main__":
    raise SystemExit(main())
