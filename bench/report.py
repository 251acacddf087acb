"""`make bench`'s table and its checks: the service at least 3x the synchronous baseline end to end on every
backend, CPU per message under twice the figure recorded in docs/benchmarks.md, and every alert at Twilio
exactly once.

The recorded figures are the table between BEGIN and END in docs/benchmarks.md, in the same format as the
printed table; `BENCH_RECORD=1 make bench` rewrites it with the run's rows.
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


def _line(cells: list[str] | tuple[str, ...]) -> str:
    return "| " + " | ".join(cells) + " |"


def table(rows: list[Row]) -> str:
    lines = [_line(HEADER), "|---|" + "---:|" * (len(HEADER) - 1)]
    return "\n".join(lines + [_line(row.cells()) for row in rows])


def _recorded_lines(document: str) -> list[str]:
    """The rows of the recorded table (its header and separator left out)."""
    if BEGIN not in document or END not in document:
        return []
    block = document.split(BEGIN, 1)[1].split(END, 1)[0]
    rows = [line.strip() for line in block.splitlines() if line.strip().startswith("|")]
    return [line for line in rows if not line.startswith(("| backend ", "|---"))]


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


def delivery_check(backend: str, alerts: int, once: int, missing: int, doubled: int, unexpected: int) -> str:
    """Every alert accepted and POSTed to Twilio exactly once."""
    verdict = "OK" if once == alerts and not unexpected else "REGRESSION"
    detail = "" if verdict == "OK" else f" ({missing} never arrived, {doubled} twice or more, {unexpected} unasked for)"
    return f"{verdict}: {backend}: {once} of {alerts} alerts at Twilio exactly once{detail}"


def record(document: str, rows: list[Row], note: str) -> str:
    """The document with its recorded table replaced by these rows; recorded backends not in them stay."""
    if BEGIN not in document or END not in document:
        raise ValueError(f"no recorded table between {BEGIN} and {END}")
    kept = [line for line in _recorded_lines(document) if _cells(line)[0] not in {row.backend for row in rows}]
    header, separator, *new = table(rows).splitlines()
    block = "\n".join([header, separator, *sorted(kept + new, key=lambda line: _cells(line)[0]), "", note])
    head, rest = document.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{block}\n{END}{rest.split(END, 1)[1]}"
