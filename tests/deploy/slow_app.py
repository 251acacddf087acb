"""A WSGI app for tests/deploy/test_gunicorn_worker.py: each request holds its thread for 0.3 s (or
`?sleep=SECONDS`) and answers with the process id of the worker that served it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    query = environ.get("QUERY_STRING", "")
    time.sleep(float(query.removeprefix("sleep=")) if query.startswith("sleep=") else 0.3)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
