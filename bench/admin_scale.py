"""How the audit desk answers at production size. A benchmark that prints figures, not a timed test.

    .venv/bin/python bench/admin_scale.py                 # 1,000 then 1,000,000 deliveries
    .venv/bin/python bench/admin_scale.py --rows 200000   # a quicker look
    .venv/bin/python bench/admin_scale.py --explain       # also print PostgreSQL's plans at scale
    .venv/bin/python bench/admin_scale.py --quick         # the smoke run `make test` does (50, then 500)

It creates its own PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/ext_twilio_bench), migrates it, seeds deliveries with three
attempts each using INSERT ... SELECT generate_series (seconds, not hours; the columns come from the
models, see ORGANIZATION_SQL below), and asks the admin
through Django's test Client, logged in as an operator, for: the list, a search by phone number
(typed with spaces and brackets), by the alert's text (a host, an investigation id, a word in every
row), a status + created-date filter, a delivery page and the index with its at-a-glance chart,
counts, errors table and time to acknowledge. It prints the median of each at 1,000 and at the large size, and the
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
#
# The seed is derived from the models, so that it does not rot as they change: every concrete field of
# Organization, Delivery and Attempt is inserted, with the SQL expression below when one is named here,
# and otherwise with the field's own default (NULL for a nullable field, '' for a blank text field). A
# field added with a default or null=True therefore needs no edit; a field removed needs none either (an
# expression for a field that no longer exists is ignored); a new field with neither needs one line here,
# and the seed says which. Expressions may use `i` (the row number, from 1), `s.status` and
# `t.created_at` for deliveries, and `d` (the delivery) and `n` (1-3) for attempts.
ORGANIZATION_SQL = {
    "oid": "'org-' || o",
    "subscription": "'subscribed'",
    "created_at": "now()",
    "updated_at": "now()",
}
ORGANIZATIONS_FROM = "generate_series(1, 20) o"

DELIVERY_SQL = {
    "id": "md5('d' || i)::uuid",
    "organization": "(SELECT min(id) FROM deliveries_organization) + (i % 20)",
    "idempotency_key": "md5('k' || i)",
    "ident": "'dr-general/rule-' || (i % 50)",
    "inv_id": "'inv-' || (i % 9973)",
    "from_number": "'+15005550006'",
    "to_number": "'+1500' || lpad((i % 200000)::text, 7, '0')",
    "body": "'Detection: suspicious powershell on host-' || (i % 5000) || ' ' || repeat('x', 80)",
    "original_length": "120",
    "truncated": "i % 100 = 0",
    "encoding": "'gsm7'",
    "segments": "1",
    "status": "s.status",
    "twilio_sid": "CASE WHEN s.status IN ('delivered', 'sent', 'queued', 'undelivered') THEN 'SM' || md5('s' || i) "
    "ELSE '' END",
    "error_code": "CASE s.status WHEN 'failed' THEN (ARRAY[21211, 21610, 21608, 30007])[1 + i % 4] "
    "WHEN 'ambiguous' THEN 20500 ELSE NULL END",
    "error_message": "CASE s.status WHEN 'failed' THEN 'Twilio refused it' WHEN 'ambiguous' THEN 'Internal Server Error' "
    "ELSE '' END",
    "attempt_count": "3",
    # as the third attempt below
    "last_trigger": "CASE WHEN s.status = 'failed' AND i % 4 = 1 THEN 'resend' ELSE 'retry' END",
    "last_outcome": "CASE s.status WHEN 'failed' THEN 'permanent' WHEN 'ambiguous' THEN 'ambiguous' ELSE 'accepted' END",
    "hold": "CASE WHEN s.status = 'suppressed' THEN 'duplicate' ELSE '' END",
    "created_at": "t.created_at",
    "updated_at": "t.created_at",
    "claimed_at": "t.created_at",
    "sent_at": "t.created_at + interval '1 second'",
    "settled_at": "CASE WHEN s.status IN ('delivered', 'failed', 'undelivered', 'suppressed') "
    "THEN t.created_at + interval '5 seconds' END",
}
DELIVERIES_FROM = """generate_series(1, %(rows)s) i
CROSS JOIN LATERAL (SELECT now() - (interval '90 days' * i / %(rows)s) AS created_at) t
CROSS JOIN LATERAL (SELECT CASE
    WHEN i % 100 < 86 THEN 'delivered'
    WHEN i % 100 < 91 THEN 'failed'
    WHEN i % 100 < 94 THEN 'sent'
    WHEN i % 100 < 96 THEN 'ambiguous'
    WHEN i % 100 < 97 THEN 'undelivered'
    WHEN i % 100 < 98 THEN 'suppressed'
    ELSE 'queued' END AS status) s"""

ATTEMPT_SQL = {
    "delivery": "d.id",
    "number": "n",
    "trigger": "CASE WHEN n = 1 THEN 'automatic' WHEN n = 3 AND d.error_code = 21610 THEN 'resend' ELSE 'retry' END",
    "started_at": "d.created_at + n * interval '2 seconds'",
    "finished_at": "d.created_at + n * interval '2 seconds' + interval '80 ms'",
    "outcome": "CASE WHEN n < 3 THEN 'not_processed' WHEN d.status = 'failed' THEN 'permanent' "
    "WHEN d.status = 'ambiguous' THEN 'ambiguous' ELSE 'accepted' END",
    "http_status": "CASE WHEN n < 3 THEN 429 WHEN d.status = 'failed' THEN 400 WHEN d.status = 'ambiguous' THEN 500 "
    "ELSE 201 END",
    "twilio_code": "CASE WHEN n < 3 THEN 20429 ELSE d.error_code END",
    "twilio_request_id": "'RQ' || md5(d.id::text || n)",
    "duration_ms": "80",
}
ATTEMPTS_FROM = "deliveries_delivery d CROSS JOIN generate_series(1, 3) n"


def insert_select(model: Any, expressions: dict[str, str], source: str) -> tuple[str, list[Any]]:
    """`INSERT INTO <table> (<every concrete column>) SELECT <expression or default>, ... FROM <source>`,
    with the defaults as parameters (so `%` in an expression is escaped for the driver)."""
    from django.db import connection, models

    columns, values, params = [], [], []
    for f in model._meta.concrete_fields:
        if isinstance(f, models.AutoField | models.BigAutoField | models.SmallAutoField):
            continue  # the database numbers them
        columns.append(connection.ops.quote_name(f.column))
        if f.name in expressions:
            values.append(expressions[f.name].replace("%", "%%"))
            continue
        default = f.get_default()
        if default is None and not f.null:
            raise SystemExit(
                f"bench/admin_scale.py: {model.__name__}.{f.name} has no default and is not nullable: "
                "give it an SQL expression in the seed's expressions"
            )
        values.append("%s")
        params.append(f.get_db_prep_save(default, connection))
    sql = (
        f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({', '.join(columns)})\n"
        f"SELECT {', '.join(values)}\nFROM {source.replace('%', '%%')}"
    )
    return sql, params


def seed(rows: int) -> None:
    from django.apps import apps
    from django.db import connection

    from deliveries.models import Attempt, Delivery, Organization

    tables = ", ".join(m._meta.db_table for m in apps.get_app_config("deliveries").get_models())
    source = DELIVERIES_FROM.replace("%(rows)s", str(int(rows)))
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        cursor.execute("SET synchronous_commit = off")
        # The rows are consistent by construction: skip the per-row foreign-key triggers (millions of
        # queued deferred checks) for this session. Needs a superuser, as the default URL's `postgres` is.
        cursor.execute("SET session_replication_role = replica")
        for model, expressions, rows_from in (
            (Organization, ORGANIZATION_SQL, ORGANIZATIONS_FROM),
            (Delivery, DELIVERY_SQL, source),
            (Attempt, ATTEMPT_SQL, ATTEMPTS_FROM),
        ):
            cursor.execute(*insert_select(model, expressions, rows_from))
        cursor.execute("SET session_replication_role = DEFAULT")
    # VACUUM sets the visibility map (index-only scans) and ANALYZE gives the planner the real shape.
    connection.ensure_connection()
    old_autocommit = connection.get_autocommit()
    connection.set_autocommit(True)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Delivery._meta.db_table}")
        cursor.execute(f"VACUUM ANALYZE {Attempt._meta.db_table}")
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


def _requests(base: str, typed: str, today: Any, org_id: Any) -> dict[str, str | None]:
    """What is timed: label -> URL (None: a different delivery's page each time)."""
    return {
        "list (newest first)": f"{base}",
        "search by number, typed as +1 (500) 123-4567": f"{base}?q={typed.replace('+', '%2B').replace(' ', '+')}",
        # The alert's text (trigram index): a host of 5,000, so about 1 in 5,000 rows (and its prefixes).
        "search by host in the text, host-4321": f"{base}?q=host-4321",
        "search by investigation id, inv-4321": f"{base}?q=inv-4321",
        "search by a word every row has, powershell": f"{base}?q=powershell",
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
    requests = _requests(base, typed, today, org_id)
    results: dict[str, float] = {}
    pages = iter(range(10**9))
    for label, url in requests.items():

        def fetch(url: str | None = url) -> None:
            if url is None:  # a different delivery's page each time
                url = f"{base}{some[next(pages) % len(some)][0]}/change/"
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


def _report(figures: dict[int, dict[str, float]], args: argparse.Namespace) -> None:
    """The table of medians, printed (and written to --report)."""
    cpus = os.cpu_count()
    lines = [
        f"Median of {args.runs} requests through Django's test Client, logged in as an operator; "
        f"PostgreSQL on this machine ({cpus} cores); 1-minute load average {os.getloadavg()[0]:.1f}.",
        "",
        f"| request | {args.small:,} deliveries | {args.rows:,} deliveries | ratio |",
        "|---|---:|---:|---:|",
    ]
    for label in figures[args.small]:
        small, large = figures[args.small][label], figures[args.rows][label]
        lines.append(f"| {label} | {small:.0f} ms | {large:.0f} ms | {large / max(small, 0.001):.1f}× |")
    print("\n" + "\n".join(lines))
    if args.report:
        args.report.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="deliveries at scale (attempts: three times that)")
    parser.add_argument("--small", type=int, default=1_000, help="deliveries of the baseline")
    parser.add_argument("--runs", type=int, default=15, help="timed requests per page (after two warm-ups)")
    parser.add_argument("--explain", action="store_true", help="print PostgreSQL's plans of each list query at scale")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (`make test` runs it): 50 then 500 deliveries, one timed request per page",
    )
    parser.add_argument("--report", type=Path, help="also write the table (markdown) to this file")
    args = parser.parse_args()
    if args.quick:
        args.small, args.rows, args.runs = 50, 500, 1

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

    _report(figures, args)


if __name__ == "__main__":
    main()
