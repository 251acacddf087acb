"""Hand-written statements of the two paths every alert takes, and the little they need.

Why by hand: Django compiles every ORM query anew. A send's claim (the delivery with its credential,
flood control's counts, the account's requests in flight) cost 2.2 ms of compilation for under 0.2 ms
of SQLite's work, a quarter of the worker's CPU per message, and its attempt's writes another 0.5 ms; a
`run` call's inserts (its deliveries, its AlertRequest) 0.4 ms (measured for issue 9). Writes that go
together are one statement on PostgreSQL (`together` says why). The statements
are plain SQL that SQLite (3.35 and later) and PostgreSQL both run. Values are adapted by the models'
own fields (a UUID is hex text on SQLite, a datetime is stored naive in UTC there), except where that
would change nothing (`_adapted`), and rows come back as model instances converted as the ORM converts
them, so the code that uses them is the same as with the ORM. tests/deliveries/test_send_statements.py
compares each with what the ORM stores and reads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.db.models.expressions import RawSQL

from deliveries.models import Credential, Delivery, OptOut, Organization

DELIVERY = Delivery._meta.db_table
CREDENTIAL = Credential._meta.db_table
ORGANIZATION = Organization._meta.db_table
OPT_OUT = OptOut._meta.db_table

M = TypeVar("M", bound=Model)

# The credential's and organisation's fields read with a delivery.
_CREDENTIAL_FIELDS = ("id", "organization_id", "account_sid", "auth_token", "rejected_at")
_ORGANIZATION_FIELDS = ("id", "oid")


def row(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _db() -> BaseDatabaseWrapper:
    """This thread's connection itself. `django.db.connection` is a stand-in that looks the thread's
    connection up again on every attribute read (1-2 µs): the statements below read dozens each, about
    70 lookups per `run` call and per send, so each takes the connection once (measured, issue 9)."""
    return connections[DEFAULT_DB_ALIAS]


def key(value: UUID | str) -> Any:
    """A delivery id as the database stores it."""
    return Delivery._meta.pk.get_db_prep_value(value if isinstance(value, UUID) else UUID(str(value)), _db())


def when(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def literal(value: str) -> str:
    """A status or kind written into a statement rather than passed as a parameter. PostgreSQL plans a
    prepared statement once for any parameters (its generic plan) and then cannot tell a rare status from
    a common one: counting the account's requests `sending` with the status as a parameter, it read the
    credential's every delivery (9 ms a claim at 60,000; issue 9). Only our own identifiers, never input."""
    assert value.isidentifier(), value
    return f"'{value}'"


def written(value: str) -> RawSQL:
    """`literal` for the ORM's filters: `.filter(status=sql.written(Status.SUPPRESSED))`. The sweeper's
    statements met the same generic plans: with the status as a parameter, the flood summaries' query read
    every delivery (179 ms at 250,000 against 0.7), and the lost timers' one could not use its partial
    index on `waiting` timers (3.4 ms at 57,000 timers against 0.01)."""
    return RawSQL(literal(value), [])


def for_update(clause: str) -> str:
    """`FOR UPDATE …` where rows can be locked (PostgreSQL). SQLite has no row locks: its write
    transactions (BEGIN IMMEDIATE) already run one at a time."""
    return f" {clause}" if connection.features.has_select_for_update else ""


def delivery_for_claim(delivery_id: UUID | str) -> Delivery | None:
    """The delivery with its organisation's oid, in one query, both rows locked on PostgreSQL: the
    organisation's first, which serialises flood control and the cap's count for one organisation across
    every worker, then the delivery's. A row this statement waited for is read as the holder left it
    (PostgreSQL reads the newest version of each row it locks after a wait), so a claim that waited sees
    the delivery another claim just took. Its credential is not read here: a row that is not locked is read
    as it was when the statement started, before any wait, so it is read after the locks (with_credential).
    On SQLite, which has no row locks, a plain read: its write transactions already run one at a time.

    FOR NO KEY UPDATE, not FOR UPDATE: it excludes every other claim as well, but not the foreign-key
    checks of rows that refer to these (an intake's new deliveries of the organisation, a status event)."""
    found = row(*delivery_locking(delivery_id))
    return None if found is None else delivery_read(found)


def delivery_locking(delivery_id: UUID | str) -> Statement:
    """delivery_for_claim's statement."""
    delivery_columns, organization_columns = _readers(Delivery, None), _readers(Organization, _ORGANIZATION_FIELDS)
    select = ", ".join(
        [f"d.{reader[0]}" for reader in delivery_columns] + [f"o.{reader[0]}" for reader in organization_columns]
    )
    return (
        f"SELECT {select} FROM {DELIVERY} d JOIN {ORGANIZATION} o ON o.id = d.organization_id WHERE d.id = %s"
        + for_update("FOR NO KEY UPDATE OF o, d"),
        [key(delivery_id)],
    )


def delivery_read(found: Sequence[Any]) -> Delivery:
    """The delivery, with its organisation, from a row of delivery_locking."""
    values = iter(found)
    delivery = _instance(Delivery, _readers(Delivery, None), values)
    delivery.organization = _instance(Organization, _readers(Organization, _ORGANIZATION_FIELDS), values)
    return delivery


def with_credential(statement: Statement, delivery: Delivery) -> tuple[Any, ...]:
    """Run `statement` (a query answering one row) and read the delivery's credential in the same round
    trip: its row, and the credential set on the delivery as `select_related` would set it (None when it
    has none; other fields of the credential load on first use). Made after every lock the claim needs."""
    query, params = statement
    found = row(*credential_joined(f"({query}) k", "%s", [*params, delivery.credential_id]))
    assert found is not None  # the statement answers one row, and a LEFT JOIN keeps it
    return credential_set(delivery, found)


def credential_joined(rows: str, credential_id: str, params: list[Any]) -> Statement:
    """SELECT the columns of `rows` (one row: a subquery as `k`, or a WITH's clause) and the credential
    whose id `credential_id` (SQL) gives, or NULLs when none does."""
    readers = _readers(Credential, _CREDENTIAL_FIELDS)
    return (
        f"SELECT k.*, {', '.join(f'credential.{reader[0]}' for reader in readers)} FROM {rows} "
        f"LEFT JOIN {CREDENTIAL} credential ON credential.id = {credential_id}",
        params,
    )


def credential_set(delivery: Delivery, found: Sequence[Any]) -> tuple[Any, ...]:
    """Set the delivery's credential from the last columns of a row of credential_joined; its other columns."""
    readers = _readers(Credential, _CREDENTIAL_FIELDS)
    ours = tuple(found[: len(found) - len(readers)])
    if delivery.credential_id is not None:
        delivery.credential = _instance(Credential, readers, iter(found[len(ours) :]))
    return ours


def credential_read(delivery: Delivery) -> None:
    """Read the delivery's credential alone (a claim with no flood control to decide: a reconcile)."""
    with_credential(("SELECT 1", []), delivery)


def at_once(*statements: Statement) -> list[list[tuple[Any, ...]]]:
    """Run queries (statements that answer rows) in one round trip and one transaction, each reading what
    was committed when it started, and answer each one's rows. PostgreSQL only.

    Why: a claim must read its counts after its locks were granted, so they are separate statements;
    made one by one in a transaction they cost BEGIN, a round trip each, and COMMIT, where each round trip
    costs a worker a quarter of a millisecond of CPU (issue 9). Sent together, in psycopg's pipeline mode
    with one Sync at the end, PostgreSQL runs them in one implicit transaction and gives each its own
    snapshot, as it does to statements made one by one, and each is still prepared once per connection.
    Where parameters are bound on the client (DB_PREPARED_STATEMENTS=0) they are one simple-protocol
    message, which PostgreSQL runs the same way."""
    db = _db()
    assert db.vendor == "postgresql"
    db.close_if_health_check_failed()  # as Django does before a cursor: often a task's first statement
    db.ensure_connection()
    db.validate_thread_sharing()
    raw = db.connection
    wrap: Any = db.make_debug_cursor if db.queries_logged else db.make_cursor  # as Django wraps its own cursors
    with db.wrap_database_errors:
        if isinstance(raw.cursor_factory, type) and issubclass(raw.cursor_factory, psycopg.ClientCursor):
            with wrap(raw.cursor()) as cursor:
                cursor.execute(";\n".join(sql for sql, _ in statements), [p for _, ps in statements for p in ps])
                answers = []
                while True:
                    answers.append(cursor.fetchall())
                    if not cursor.nextset():
                        return answers
        cursors = [wrap(raw.cursor()) for _ in statements]
        try:
            with raw.pipeline():
                for cursor, (sql, params) in zip(cursors, statements, strict=True):
                    cursor.execute(sql, params)
            return [cursor.fetchall() for cursor in cursors]
        finally:
            for cursor in cursors:
                cursor.close()


Converter = Callable[[Any, Any, Any], Any]
Reader = tuple[str, str, Any, list[Converter]]  # column, attribute, and the ORM's expression and converters


@functools.cache
def _readers(model: type[Model], names: tuple[str, ...] | None) -> list[Reader]:
    """How to read the columns of `names` (every column when None), in the model's field order, as
    the ORM reads them. Worked out once per process: this lookup is most of what a RawQuerySet costs."""
    readers = []
    for field in model._meta.concrete_fields:
        if names is None or field.attname in names:
            col = field.cached_col
            converters = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
            readers.append((str(field.column), field.attname, col, converters))
    return readers


def _instance(model: type[M], readers: list[Reader], values: Iterator[Any]) -> M:
    db = _db()
    converted = []
    for _, _, col, converters in readers:
        value = next(values)
        for convert in converters:
            value = convert(value, col, db)
        converted.append(value)
    return model.from_db(db.alias, [attname for _, attname, _, _ in readers], converted)


Statement = tuple[str, list[Any]]


def updating(
    model: type[Model], values: dict[str, Any], where: str, params: Sequence[Any], also: str = ""
) -> Statement:
    """UPDATE the rows `where` selects with `values` (by field name, adapted as the ORM adapts them) and
    the assignments in `also` (SQL), as a statement for `together`."""
    columns, adapted = prepared(model, values)
    assignments = ", ".join([f"{column} = %s" for column in columns] + ([also] if also else []))
    return f"UPDATE {model._meta.db_table} SET {assignments} WHERE {where}", [*adapted, *params]


def inserting(model: type[Model], values: dict[str, Any]) -> Statement:
    """INSERT one row of `values` (by field name, adapted as the ORM adapts them), answering its new id,
    as a statement for `together`."""
    columns, adapted = prepared(model, values)
    placeholders = ", ".join(["%s"] * len(columns))
    return (
        f"INSERT INTO {model._meta.db_table} ({', '.join(columns)}) VALUES ({placeholders}) RETURNING id",
        adapted,
    )


def together(*writes: Statement) -> tuple[int, tuple[Any, ...] | None]:
    """Run writes on different tables, in order, as one statement where the database can (PostgreSQL runs
    writes in a WITH clause): the rows the last one changed, and the first row it answered.

    Why: each statement is a round trip, and a round trip costs the worker ~150 µs of CPU with 16
    threads taking turns at the GIL (70 µs alone; measured with SELECT 1, issue 9), and a transaction
    two more (BEGIN, COMMIT), while one statement is atomic by itself. SQLite cannot (and has no round
    trip to save): it runs them in turn, in one transaction (the caller's, if it holds one)."""
    *earlier, last = writes
    db = _db()
    if db.vendor == "postgresql":
        if earlier:
            clauses = ", ".join(f"written_{n} AS ({statement})" for n, (statement, _) in enumerate(earlier))
            last = (f"WITH {clauses} {last[0]}", [*(p for _, params in earlier for p in params), *last[1]])
        with db.cursor() as cursor:
            cursor.execute(*last)
            return int(cursor.rowcount), cursor.fetchone() if cursor.description else None
    with transaction.atomic(savepoint=False), db.cursor() as cursor:
        for write in writes:
            cursor.execute(*write)
        return int(cursor.rowcount), cursor.fetchone() if cursor.description else None


def inserting_objects(objects: Sequence[Model]) -> Statement:
    """INSERT unsaved instances of one model whose primary key is already set (a UUID default), one or
    more, as one statement for `together`, as bulk_create would store them (auto_now fields stamped,
    values adapted alike); `stored` marks them saved once it ran."""
    model, db = type(objects[0]), _db()
    fields, plain = model._meta.concrete_fields, _plain_fields(db.vendor)
    values = [_adapted(field, field.pre_save(obj, add=True), db, plain) for obj in objects for field in fields]
    one = "(" + ", ".join(["%s"] * len(fields)) + ")"
    return (
        f"INSERT INTO {model._meta.db_table} ({', '.join(str(field.column) for field in fields)}) "
        f"VALUES {', '.join([one] * len(objects))}",
        values,
    )


def stored(objects: Sequence[Model]) -> None:
    """Mark instances written by hand as saved, as the ORM does after an insert."""
    alias = _db().alias
    for obj in objects:
        obj._state.adding, obj._state.db = False, alias


def prepared(model: type[Model], values: dict[str, Any]) -> tuple[list[str], list[Any]]:
    db = _db()
    plain = _plain_fields(db.vendor)
    columns, adapted = [], []
    for name, value in values.items():
        field = model._meta.get_field(name)
        assert isinstance(field, Field) and field.column
        columns.append(field.column)
        adapted.append(_adapted(field, value, db, plain))
    return columns, adapted


# Field classes whose adaptation of a value of the type they hold changes nothing (Django's own
# classes only: a subclass, such as an encrypted field, may adapt). Most of a delivery's 39 columns are
# of these, and adapting them all cost more than the INSERT (cProfile, 1,000 `run` calls: 0.85 -> 0.46 s
# in the deliveries' INSERT; issue 9). Integers only where the backend passes them as they are (PostgreSQL's
# wraps each in its type, Int4 and the like).
PlainFields = dict[type[Field], tuple[type, ...]]
_TEXT_FIELDS: PlainFields = {models.CharField: (str,), models.TextField: (str,), models.BooleanField: (bool,)}
_INTEGER_FIELDS: PlainFields = {
    models.IntegerField: (int,),
    models.PositiveIntegerField: (int,),
    models.PositiveSmallIntegerField: (int,),
}


@functools.cache
def _plain_fields(vendor: str) -> PlainFields:
    integers_as_they_are = type(connection.ops.adapt_integerfield_value(1, "IntegerField")) is int
    return _TEXT_FIELDS | _INTEGER_FIELDS if integers_as_they_are else _TEXT_FIELDS


def _adapted(field: Field, value: Any, db: BaseDatabaseWrapper, plain_fields: PlainFields) -> Any:
    """The value as the database takes it: as is for a plain field holding None or a value of exactly its
    type (not a subclass such as a choices enum, nor a bool in an integer field), else as the ORM adapts it."""
    plain = plain_fields.get(type(field))
    if plain is not None and (value is None or type(value) in plain):
        return value
    return field.get_db_prep_save(value, db)
