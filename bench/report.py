"""`make bench`'s tables and its checks: the service at least 3x the synchronous baseline end to end on every
backend, CPU per message under twice the figure recorded in docs/benchmarks.md, every alert at Twilio exactly
once; and with events for LimaCharlie on, end to end at least nine tenths of the run without them, and every
alert's event at the hook exactly once.

The recorded figures are the two tables between BEGIN and END in docs/benchmarks.md, in the same format as the
printed tables; `BENCH_RECORD=1 make bench` rewrites them with the run's rows.
"""

from __future__ import annotations

from dataclasses import dataclass

BEGIN = "<!-- bench:recorded -->"
END = "<!-- /bench:recorded -->"
FLOOR = 3.0  # the service's end-to-end throughput, as a multiple of the baseline's, below which it regressed
CPU_GROWTH = 2.0  # CPU per message this many times the recorded figure is a regression
HEADER = (
    "backend",
    "alerts",
    "service alerts/s",
    "baseline alerts/s",
    "service ÷ baseline",
    "web CPU ms/msg",
    "worker CPU ms/msg",
    "CPU ms/msg",
)
CPU_COLUMN = HEADER.index("CPU ms/msg")
EVENTS_FLOOR = 0.9  # end to end with events, as a multiple of the same backend's run without them
EVENTS_HEADER = (
    "backend",
    "alerts",
    "alerts/s without events",
    "alerts/s with events",
    "with ÷ without",
    "CPU ms/msg with events",
    "events/alert",
    "hook POSTs/alert",
)


@dataclass
class Row:
    backend: str
    alerts: int
    service: float  # alerts/s reaching the fake Twilio, end to end
    baseline: float
    web_cpu_ms: float  # CPU ms per message of the web processes, and of the workers
    worker_cpu_ms: float

    @property
    def ratio(self) -> float:
        return self.service / self.baseline if self.baseline else 0.0

    @property
    def cpu_ms(self) -> float:
        return self.web_cpu_ms + self.worker_cpu_ms

    def cells(self) -> list[str]:
        figures = (self.service, self.baseline, self.ratio, self.web_cpu_ms, self.worker_cpu_ms, self.cpu_ms)
        return [self.backend, str(self.alerts), *(f"{n:.1f}" for n in figures)]


@dataclass
class EventsRow:
    """A backend's run with events for LimaCharlie on, against its run without them."""

    backend: str
    alerts: int
    without: float  # alerts/s end to end without events
    service: float  # and with them
    cpu_ms: float  # CPU ms per message with events, web and workers together
    events: float  # events the hook received, per alert
    posts: float  # POSTs to the hook, per alert

    @property
    def ratio(self) -> float:
        return self.service / self.without if self.without else 0.0

    def cells(self) -> list[str]:
        figures = (f"{self.without:.1f}", f"{self.service:.1f}", f"{self.ratio:.2f}", f"{self.cpu_ms:.1f}")
        return [self.backend, str(self.alerts), *figures, f"{self.events:.2f}", f"{self.posts:.3f}"]


def _line(cells: list[str] | tuple[str, ...]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: tuple[str, ...], rows: list[list[str]]) -> str:
    lines = [_line(header), "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join(lines + [_line(cells) for cells in rows])


def table(rows: list[Row]) -> str:
    return _table(HEADER, [row.cells() for row in rows])


def events_table(rows: list[EventsRow]) -> str:
    return _table(EVENTS_HEADER, [row.cells() for row in rows])


def _recorded_lines(document: str, header: tuple[str, ...] = HEADER) -> list[str]:
    """The rows of the recorded table with this header (its header and separator left out)."""
    if BEGIN not in document or END not in document:
        return []
    block, rows, inside = document.split(BEGIN, 1)[1].split(END, 1)[0], [], False
    for line in (line.strip() for line in block.splitlines()):
        if line.startswith("|") and _cells(line) == list(header):
            inside = True
        elif not line.startswith("|"):
            inside = False
        elif inside and not line.startswith("|---"):
            rows.append(line)
    return rows


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def recorded_cpu(document: str) -> dict[str, float]:
    """The recorded CPU ms per message, by backend."""
    return {cells[0]: float(cells[CPU_COLUMN]) for cells in map(_cells, _recorded_lines(document))}


def checks(rows: list[Row], recorded: dict[str, float]) -> list[str]:
    """An `OK: ...` or `REGRESSION: ...` line per rule and backend."""
    lines = []
    for row in rows:
        verdict = "OK" if row.ratio >= FLOOR else "REGRESSION"
        lines.append(
            f"{verdict}: {row.backend}: end to end {row.service:.1f} alerts/s is {row.ratio:.1f}x the baseline's "
            f"{row.baseline:.1f} (floor {FLOOR:g}x)"
        )
        before = recorded.get(row.backend)
        if before is None:
            lines.append(f"OK: {row.backend}: CPU {row.cpu_ms:.1f} ms/msg, no recorded figure to compare with")
            continue
        verdict = "OK" if row.cpu_ms < CPU_GROWTH * before else "REGRESSION"
        lines.append(
            f"{verdict}: {row.backend}: CPU {row.cpu_ms:.1f} ms/msg against {before:.1f} recorded "
            f"(regression at {CPU_GROWTH:g}x: {CPU_GROWTH * before:.1f})"
        )
    return lines


def events_checks(rows: list[EventsRow]) -> list[str]:
    """An `OK: ...` or `REGRESSION: ...` line per backend: end to end with events on, at least EVENTS_FLOOR of
    the run without them."""
    lines = []
    for row in rows:
        verdict = "OK" if row.ratio >= EVENTS_FLOOR else "REGRESSION"
        lines.append(
            f"{verdict}: {row.backend}: with events {row.service:.1f} alerts/s end to end is {row.ratio:.2f}x "
            f"the {row.without:.1f} without them (floor {EVENTS_FLOOR:g}x)"
        )
    return lines


def events_check(system: str, alerts: int, once: int, received: int) -> str:
    """Every alert's event (its text delivered) at the hook exactly once, and no other event."""
    verdict = "OK" if once == alerts and received == alerts else "REGRESSION"
    detail = "" if verdict == "OK" else f" ({received} events received in all)"
    return f"{verdict}: {system}: {once} of {alerts} alerts with their event at the hook exactly once{detail}"


def delivery_check(backend: str, alerts: int, once: int, missing: int, doubled: int, unexpected: int) -> str:
    """Every alert accepted and POSTed to Twilio exactly once."""
    verdict = "OK" if once == alerts and not unexpected else "REGRESSION"
    detail = "" if verdict == "OK" else f" ({missing} never arrived, {doubled} twice or more, {unexpected} unasked for)"
    return f"{verdict}: {backend}: {once} of {alerts} alerts at Twilio exactly once{detail}"


def _merged(document: str, header: tuple[str, ...], new_table: str, backends: set[str]) -> list[str]:
    """A recorded table with the run's rows in place of its backends' (the others kept), by backend."""
    kept = [line for line in _recorded_lines(document, header) if _cells(line)[0] not in backends]
    head, separator, *new = new_table.splitlines()
    return [head, separator, *sorted(kept + new, key=lambda line: _cells(line)[0])]


def record(document: str, rows: list[Row], note: str, events_rows: list[EventsRow] | None = None) -> str:
    """The document with its recorded tables replaced by these rows; recorded backends not in them stay."""
    if BEGIN not in document or END not in document:
        raise ValueError(f"no recorded table between {BEGIN} and {END}")
    events_rows = events_rows or []
    main = _merged(document, HEADER, table(rows), {row.backend for row in rows})
    events = _merged(document, EVENTS_HEADER, events_table(events_rows), {row.backend for row in events_rows})
    block = "\n".join([*main, "", *events, "", note])
    head, rest = document.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{block}\n{END}{rest.split(END, 1)[1]}"
