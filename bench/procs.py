"""The processes of a system under measurement, read from /proc: which are web (gunicorn) and worker
(celery) processes, their CPU seconds, and how many Celery workers bin/run started."""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    """The fields of /proc/pid/stat after the command name (field 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            kids.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return kids


def _kind(pid: int) -> str | None:
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    return "web" if b"gunicorn" in cmdline else "worker" if b"celery" in cmdline else None


def cpu_by_kind(pid: int) -> dict[str, float]:
    """CPU seconds (user + system, its reaped children's included) of the processes under pid, by kind:
    `web` (gunicorn) and `worker` (celery)."""
    totals, kids, todo = {"web": 0.0, "worker": 0.0}, _children(), [pid]
    while todo:
        current = todo.pop()
        todo.extend(kids.get(current, []))
        try:
            kind, fields = _kind(current), _stat(current)
        except OSError:
            continue
        if kind:
            totals[kind] += sum(int(fields[n]) for n in (11, 12, 13, 14)) / TICK
    return totals


def workers_started(pid: int) -> int:
    """Celery workers under pid (bin/run): celery processes whose parent is not one (a worker's own
    children, such as its beat, are not workers)."""
    kids, todo, started = _children(), [(pid, False)], 0
    while todo:
        current, parent_is_celery = todo.pop()
        try:
            celery = _kind(current) == "worker"
        except OSError:
            continue
        started += celery and not parent_is_celery
        todo.extend((child, celery) for child in kids.get(current, []))
    return started
