"""The ids a log line is about (organisation, idempotency key, delivery), carried in a contextvar.

The intake view binds `oid` and `idempotency_key` for the length of a request, the send task binds
`delivery_id` (and the service adds the organisation and key once it has loaded the row), and
`ContextFilter` copies whatever is bound onto every log record, so a line written deep inside a
service or the Twilio client still says which delivery it is about without passing ids around.

Only these three ids are ever bound. A JWT, token or secret has no way into a log record from here.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType

FIELDS = ("oid", "idempotency_key", "delivery_id")

# Read-only default: every bind() sets a fresh dict, so no context ever writes into another's.
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "ext_twilio_log_context", default=MappingProxyType({})
)


def bind(**ids: str | None) -> None:
    """Add ids to the current context (unknown names are refused, empty values ignored)."""
    unknown = set(ids) - set(FIELDS)
    if unknown:
        raise ValueError(f"not a log context field: {', '.join(sorted(unknown))}")
    current = dict(_context.get())
    current.update({k: str(v) for k, v in ids.items() if v})
    _context.set(current)


def current() -> dict[str, str]:
    return dict(_context.get())


@contextmanager
def scope(**ids: str | None) -> Iterator[None]:
    """Bind ids for a block and restore the previous context after it. Gunicorn threads and Celery
    pool threads are reused for the next request or task, so a context must never outlive its unit
    of work."""
    token = _context.set({})
    try:
        bind(**ids)
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Puts the bound ids on each record: as attributes (the JSON formatter writes them as fields)
    and as one `log_context` string (the plain formatter appends it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _context.get()
        for name in FIELDS:
            if name in ids and not hasattr(record, name):
                setattr(record, name, ids[name])
        record.log_context = "".join(f" {k}={ids[k]}" for k in FIELDS if k in ids)
        return True
