"""How the audit desk answers at production size. A benchmark that prints figures, not a timed test.

    .venv/bin/python bench/admin_scale.py                 # 1,000 then 1,000,000 deliveries
    .venv/bin/python bench/admin_scale.py --rows 200000   # a quicker look
    .venv/bin/python bench/admin_scale.py --explain       # also print PostgreSQL's plans at scale

It creates its own PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/ext_twilio_bench), migrates it, seeds deliveries with three
attempts each using INSERT ... SELECT generate_series (seconds, not hours), and asks the admin
through Django's test Client, logged in as an operator, for: the list, a search by phone number
(typed with spaces and brackets), a status + created-date filter, a delivery page and the index
with its at-a-glance chart. It prints the median of each at 1,000 and at the large size, and the
ratio, then drops the database (unless --keep).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ext_twilio_bench")


def _configure() -> None:
    from cryptography.fernet import Fernet

    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=BENCH_URL,
        VAR_DIR=str(ROOT / "var" / "bench"),
        SECRET_KEY=secrets.token_urlsafe(40),
        FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="testserver",
        LOG_LEVEL="WARNING",
    )


def _admin_connection() -> Any:
    import psycopg

    parts = urlsplit(BENCH_URL)
    return psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True)


def _database_name() -> str:
    return urlsplit(BENCH_URL).path.lstrip("/")


def create_database() -> None:
    with _admin_connection() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{_database_name()}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{_database_name()}"')


def drop_database() -> None:
    from django.db import connections

    connections.close_all()
    with _admin_connection() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{_database_name()}" WITH (FORCE)')


# Deliveries spread over 90 days, newest now. Statuses roughly as a healthy month looks: most
# delivered, a few per cent failed, some ambiguous or still queued. 200,000 distinct recipients,
# so a number search finds a handful of rows among the million. Three attempts each.
SEED_SQL = """
SET synchronous_commit = off;
-- The rows are consistent by construction: skip the per-row foreign-key triggers (millions of
-- queued deferred checks) for this session. Needs a superuser, as the default URL's `postgres` is.
SET session_replication_role = replica;
INSERT INTO deliveries_organization (oid, subscription, twilio_account_sid, twilio_auth_token, created_at, updated_at)
SELECT 'org-' || o, 'subscribed', '', '', now(), now() FROM generate_series(1, 20) o;

INSERT INTO deliveries_delivery (
    id, organization_id, idempotency_key, ident, inv_id, from_number, to_number, body, original_length,
    truncated, encoding, segments, status, status_reason, twilio_sid, error_code, error_message,
    attempt_count, last_trigger, last_outcome, created_at, updated_at, sent_at, settled_at)
SELECT
    md5('d' || i)::uuid,
    (SELECT min(id) FROM deliveries_organization) + (i % 20),
    md5('k' || i),
    'dr-general/rule-' || (i % 50),
    'inv-' || (i % 9973),
    '+15005550006',
    '+1500' || lpad((i % 200000)::text, 7, '0'),
    'Detection: suspicious powershell on host-' || (i % 5000) || ' ' || repeat('x', 80),
    120,
    i % 100 = 0,
    'gsm7',
    1,
    s.status,
    '',
    CASE WHEN s.status IN ('delivered', 'sent', 'queued', 'undelivered') THEN 'SM' || md5('s' || i) ELSE '' END,
    CASE s.status WHEN 'failed' THEN (ARRAY[21211, 21610, 21608, 30007])[1 + i % 4]
                  WHEN 'ambiguous' THEN 20500 ELSE NULL END,
    CASE s.status WHEN 'failed' THEN 'Twilio refused it' WHEN 'ambiguous' THEN 'Internal Server Error' ELSE '' END,
    3,
    CASE WHEN s.status = 'failed' AND i % 4 = 1 THEN 'resend' ELSE 'retry' END,  -- as the third attempt below
    CASE s.status WHEN 'failed' THEN 'permanent' WHEN 'ambiguous' THEN 'ambiguous' ELSE 'accepted' END,
    t.created_at,
    t.created_at,
    t.created_at + interval '1 second',
    CASE WHEN s.status IN ('delivered', 'failed', 'undelivered') THEN t.created_at + interval '5 seconds' END
FROM generate_series(1, %(rows)s) i
CROSS JOIN LATERAL (SELECT now() - (interval '90 days' * i / %(rows)s) AS created_at) t
CROSS JOIN LATERAL (SELECT CASE
    WHEN i % 100 < 86 THEN 'delivered'
    WHEN i % 100 < 91 THEN 'failed'
    WHEN i % 100 < 94 THEN 'sent'
    WHEN i % 100 < 96 THEN 'ambiguous'
    WHEN i % 100 < 97 THEN 'undelivered'
    WHEN i % 100 < 98 THEN 'suppressed'
    ELSE 'queued' END AS status) s;

INSERT INTO deliveries_attempt (
    delivery_id, number, trigger, reason, started_at, finished_at, outcome, http_status, twilio_code,
    twilio_message, twilio_request_id, duration_ms)
SELECT d.id, n,
    CASE WHEN n = 1 THEN 'automatic' WHEN n = 3 AND d.error_code = 21610 THEN 'resend' ELSE 'retry' END,
    '', d.created_at + n * interval '2 seconds', d.created_at + n * interval '2 seconds' + interval '80 ms',
    CASE WHEN n < 3 THEN 'not_processed'
         WHEN d.status = 'failed' THEN 'permanent'
         WHEN d.status = 'ambiguous' THEN 'ambiguous' ELSE 'accepted' END,
    CASE WHEN n < 3 THEN 429 WHEN d.status = 'failed' THEN 400 WHEN d.status = 'ambiguous' THEN 500 ELSE 201 END,
    CASE WHEN n < 3 THEN 20429 ELSE d.error_code END,
    '', 'RQ' || md5(d.id::text || n), 80
FROM deliveries_delivery d CROSS JOIN generate_series(1, 3) n;
"""


def seed(rows: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE deliveries_attempt, deliveries_statusevent, deliveries_optout, deliveries_delivery, "
            "deliveries_alertrequest, deliveries_organization RESTART IDENTITY CASCADE"
        )
        cursor.execute(SEED_SQL.replace("%(rows)s", str(int(rows))))
        cursor.execute("SET session_replication_role = DEFAULT")
    # VACUUM sets the visibility map (index-only scans) and ANALYZE gives the planner the real shape.
    connection.ensure_connection()
    old_autocommit = connection.get_autocommit()
    connection.set_autocommit(True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE deliveries_delivery")
        cursor.execute("VACUUM ANALYZE deliveries_attempt")
    connection.set_autocommit(old_autocommit)


def _median_ms(fn: Callable[[], Any], runs: int) -> float:
    for _ in range(2):  # warm: connection, template loading, PostgreSQL's cache
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(runs: int, explain: bool) -> dict[str, float]:
    from django.contrib.auth.models import Group, User
    from django.test import Client
    from django.utils import timezone

    from deliveries.models import Delivery

    user, _ = User.objects.get_or_create(username="bench-operator", defaults={"is_staff": True})
    user.groups.add(Group.objects.get(name="Operator"))
    client = Client()
    client.force_login(user)

    base = "/admin/deliveries/delivery/"
    some = list(
        Delivery.objects.order_by("-created_at").values_list("id", "to_number")[
            :: max(1, Delivery.objects.count() // 50)
        ][:20]
    )
    number = some[len(some) // 2][1]  # e.g. +15000012345, typed as an operator would paste it
    typed = f"+1 ({number[2:5]}) {number[5:8]}-{number[8:]}"
    today = timezone.now().date()
    org_id = Delivery.objects.values_list("organization_id", flat=True).first()
    requests = {
        "list (newest first)": f"{base}",
        "search by number, typed as +1 (500) 123-4567": f"{base}?q={typed.replace('+', '%2B').replace(' ', '+')}",
        "status=failed + created 30-20 days ago": (
            f"{base}?status__exact=failed&created_from={today - timedelta(days=30)}&created_to={today - timedelta(days=20)}"
        ),
        # The other filters, for completeness (the bar is the three above).
        "outcome class = permanent (last attempt)": f"{base}?outcome=permanent",
        "outcome class = not processed (last attempt)": f"{base}?outcome=not_processed",
        "last attempt trigger = resend": f"{base}?last_trigger=resend",
        "Twilio error code 21610": f"{base}?error_code=21610",
        "organisation + truncated": f"{base}?organization__id__exact={org_id}&truncated__exact=1",
        "delivery page (timeline)": None,
        "admin index (at a glance)": "/admin/",
    }
    results: dict[str, float] = {}
    pages = iter(range(10**9))
    for label, url in requests.items():
        if url is None:

            def fetch() -> None:
                pk = some[next(pages) % len(some)][0]
                _check(client.get(f"{base}{pk}/change/"))
        else:

            def fetch(url: str = url) -> None:
                _check(client.get(url))

        results[label] = _median_ms(fetch, runs)
        if explain and url and url.startswith(base):
            _explain(client, url)
    return results


def _check(response: Any) -> None:
    if response.status_code != 200:
        raise SystemExit(f"the admin answered {response.status_code}: {response.content[:300]!r}")


def _explain(client: Any, url: str) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        client.get(url)
    slow = sorted(captured.captured_queries, key=lambda q: -float(q["time"]))[:2]
    for query in slow:
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS OFF) " + query["sql"])
            print(f"\n-- {url}\n-- {query['sql'][:300]}\n" + "\n".join(r[0] for r in cursor.fetchall()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="deliveries at scale (attempts: three times that)")
    parser.add_argument("--small", type=int, default=1_000, help="deliveries of the baseline")
    parser.add_argument("--runs", type=int, default=15, help="timed requests per page (after two warm-ups)")
    parser.add_argument("--explain", action="store_true", help="print PostgreSQL's plans of each list query at scale")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    _configure()
    create_database()
    import django

    django.setup()
    from django.core.management import call_command

    try:
        call_command("migrate", verbosity=0)
        figures = {}
        for rows in (args.small, args.rows):
            started = time.perf_counter()
            seed(rows)
            print(
                f"seeded {rows:,} deliveries and {3 * rows:,} attempts in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
            figures[rows] = measure(args.runs, explain=args.explain and rows == args.rows)
    finally:
        if not args.keep:
            drop_database()

    cpus = os.cpu_count()
    print(
        f"\nMedian of {args.runs} requests through Django's test Client, logged in as an operator; "
        f"PostgreSQL on this machine ({cpus} cores).\n"
    )
    print(f"| request | {args.small:,} deliveries | {args.rows:,} deliveries | ratio |")
    print("|---|---:|---:|---:|")
    for label in figures[args.small]:
        small, large = figures[args.small][label], figures[args.rows][label]
        print(f"| {label} | {small:.0f} ms | {large:.0f} ms | {large / small:.1f}× |")


if __name__ == "__main__":
    main()
