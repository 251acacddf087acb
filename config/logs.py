"""The logging configuration: one line a record, JSON for a log pipeline or plain for a terminal, with
the delivery's ids on every record that has them, and the SDKs' chatty loggers kept quiet."""

from __future__ import annotations

from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS


def config(*, level: str, format_name: str) -> dict[str, Any]:
    celery_task_lines = "DEBUG" if level == "DEBUG" else "WARNING"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        # Adds oid, idempotency_key and delivery_id (deliveries.observability.logcontext) to every record that has them.
        "filters": {
            "context": {"()": "deliveries.observability.logcontext.ContextFilter"},
            "client_fault": {"()": "config.logfilters.ClientFaultWithoutTraceback"},
        },
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s%(log_context)s"},
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
                "reserved_attrs": [*RESERVED_ATTRS, "log_context"],
                "timestamp": False,
            },
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": format_name,
                "filters": ["context", "client_fault"],
            },
        },
        "root": {"handlers": ["console"], "level": level},
        # The twilio SDK logs request bodies and headers (Basic auth) at DEBUG, urllib3 logs URLs, and
        # the limacharlie SDK may log its requests: keep them quiet whatever level says.
        "loggers": {
            "twilio": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
            "limacharlie": {"level": "WARNING"},
            # Celery's two lines per task ("received", "succeeded") say less than the send's own line (the
            # delivery, its attempt, Twilio's answer). A failed task is still logged.
            "celery.worker.strategy": {"level": celery_task_lines},
            "celery.app.trace": {"level": celery_task_lines},
        },
    }
