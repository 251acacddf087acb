"""The Celery app's settings that the worker's threads depend on."""

from __future__ import annotations

import threading

from celery.backends.base import DisabledBackend

from config.celery import app


def test_every_thread_shares_the_one_stand_in_result_backend() -> None:
    # Without CELERY_RESULT_BACKEND_THREAD_SAFE each thread built its own on first use, scanning every
    # installed package's entry points: with 64 worker threads, 5 % of a burst's CPU.
    seen = []
    thread = threading.Thread(target=lambda: seen.append(app.backend))
    thread.start()
    thread.join()

    assert isinstance(app.backend, DisabledBackend)  # no result backend: its stand-in keeps no state
    assert seen == [app.backend]
    assert seen[0] is app.backend
