"""Gunicorn settings for ext-twilio: used by deploy/Procfile, the systemd unit and `make bench`, so the
benchmark measures what a deployment runs. Every value can be overridden by the environment
(WEB_CONCURRENCY, WEB_THREADS, HOST, PORT) or by GUNICORN_CMD_ARGS.

Why gthread: a `run` call spends part of its time waiting on LimaCharlie's API (reading the Twilio
credential) and on the database; threads overlap those waits, while one process per core spreads the
Python work over the cores (docs/decisions/0002-threads-not-prefork.md).
"""

from __future__ import annotations

import multiprocessing
import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "0")) or max(2, multiprocessing.cpu_count())
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
# LimaCharlie waits up to two minutes for an answer; a request of ours takes at most the LimaCharlie
# API timeout (LC_API_TIMEOUT_SECONDS, max 110 s) plus a little. Kill nothing a caller still waits for.
timeout = 120
graceful_timeout = 20
keepalive = 5  # seconds; behind a proxy that keeps connections open to us
# Bounded request line and headers: the intake's body is capped by LC_MAX_BODY_BYTES in the app.
limit_request_line = 8190
errorlog = "-"
# Access lines come from the proxy in front; set GUNICORN_CMD_ARGS="--access-logfile -" to have ours.
accesslog = None
# The proxy in front terminates TLS and sets X-Forwarded-*; trust it only from where it connects.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
