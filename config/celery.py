"""The Celery app. Configuration lives in Django settings under the CELERY_ prefix."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("ext_twilio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_prerun.connect
@signals.task_postrun.connect
def recycle_database_connections(task: Any = None, **kwargs: Any) -> None:
    """Around each task, as Django does around each web request: close this thread's connection if it
    failed or outlived DB_CONN_MAX_AGE, and check its health before its next use; otherwise keep it
    (CELERY_DB_REUSE_MAX in the settings stops Celery closing it every time). An eager task (the tests')
    runs inside its caller's transaction, which must stay open."""
    if task is not None and task.request.is_eager:
        return
    close_old_connections()
