"""Logging filters of the composition root (named in settings.LOGGING)."""

from __future__ import annotations

import logging


class ClientFaultWithoutTraceback(logging.Filter):
    """Django logs a request it refuses as suspicious (an oversized body, a host not in ALLOWED_HOSTS,
    too many fields) on `django.security.<class>` at ERROR, with a traceback. Those are the client's
    fault, any stranger can cause them, and the traceback says nothing: they are written as one
    warning line instead, so the log keeps ERROR and tracebacks for the service's own faults."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("django.security."):
            record.exc_info, record.exc_text, record.stack_info = None, None, None
            if record.levelno > logging.WARNING:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
