"""`make bench`'s checks (bench/report.py): the service at least 3x the synchronous baseline end to end,
CPU per message under twice the figures recorded in docs/benchmarks.md, every alert at Twilio exactly once;
and the recorded table, read and rewritten. (The benchmark itself runs in tests/test_bench_smoke.py.)"""

from __future__ import annotations

from pathlib import Path

from bench import report
from bench.report import BEGIN, END, Row

DOCUMENT = f"""# Benchmarks

| backend | something else | CPU ms/msg |
|---|---|---:|
| embedded | not the recorded table | 99.0 |

{BEGIN}
| backend | alerts | service alerts/s | baseline alerts/s | service ÷ baseline | web CPU ms/msg | worker CPU ms/msg | CPU ms/msg |
|---|---:|---:|---:|---:|---:|---:|---:|
| embedded | 2000 | 240.0 | 30.0 | 8.0 | 2.5 | 3.0 | 5.5 |
| postgres | 2000 | 180.0 | 30.0 | 6.0 | 2.8 | 3.4 | 6.2 |

Recorded on 2 cores.
{END}

## After the table
"""


def _row(backend: str = "embedded", service: float = 240.0, baseline: float = 30.0, cpu: float = 5.5) -> Row:
    return Row(backend, 2000, service, baseline, web_cpu_ms=cpu / 2, worker_cpu_ms=cpu / 2)


def test_it_reads_the_recorded_cpu_per_message_from_between_the_markers_only() -> None:
    assert report.recorded_cpu(DOCUMENT) == {"embedded": 5.5, "postgres": 6.2}


def test_the_repository_records_a_cpu_figure_for_each_backend() -> None:
    recorded = report.recorded_cpu((Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md").read_text())
    assert set(recorded) == {"embedded", "postgres"} and all(cpu > 0 for cpu in recorded.values())


def test_a_document_without_the_markers_records_nothing() -> None:
    assert report.recorded_cpu("| backend | CPU ms/msg |\n| embedded | 5.5 |") == {}


def test_it_says_regression_when_end_to_end_falls_under_three_times_the_baseline() -> None:
    lines = report.checks([_row("embedded", service=89.9), _row("postgres", service=90.0)], {})

    assert [line.split(":")[0] for line in lines] == ["REGRESSION", "OK", "OK", "OK"]
    assert lines[0] == "REGRESSION: embedded: end to end 89.9 alerts/s is 3.0x the baseline's 30.0 (floor 3x)"
    assert lines[2] == "OK: postgres: end to end 90.0 alerts/s is 3.0x the baseline's 30.0 (floor 3x)"


def test_it_says_regression_when_cpu_per_message_doubles_against_the_record() -> None:
    recorded = {"embedded": 5.5, "postgres": 6.2}
    lines = report.checks([_row("embedded", cpu=11.0), _row("postgres", cpu=12.3)], recorded)
    assert lines[1] == "REGRESSION: embedded: CPU 11.0 ms/msg against 5.5 recorded (regression at 2x: 11.0)"
    assert lines[3] == "OK: postgres: CPU 12.3 ms/msg against 6.2 recorded (regression at 2x: 12.4)"


def test_a_backend_without_a_recorded_figure_is_not_a_regression() -> None:
    lines = report.checks([_row("postgres", cpu=50.0)], {"embedded": 5.5})
    assert lines[1] == "OK: postgres: CPU 50.0 ms/msg, no recorded figure to compare with"


def test_an_alert_missing_doubled_or_unasked_for_at_twilio_is_a_regression() -> None:
    assert report.delivery_check("embedded", 2000, 2000, 0, 0, 0) == (
        "OK: embedded: 2000 of 2000 alerts at Twilio exactly once"
    )
    assert report.delivery_check("postgres", 2000, 1997, 2, 1, 0) == (
        "REGRESSION: postgres: 1997 of 2000 alerts at Twilio exactly once "
        "(2 never arrived, 1 twice or more, 0 unasked for)"
    )
    assert report.delivery_check("embedded", 2000, 2000, 0, 0, 1).startswith("REGRESSION: embedded:")


def test_the_table_gives_each_backend_its_throughputs_ratio_and_cpu() -> None:
    lines = report.table([_row("embedded", service=245.0, baseline=31.0, cpu=6.0)]).splitlines()
    assert lines[0] == "| " + " | ".join(report.HEADER) + " |"
    assert lines[2] == "| embedded | 2000 | 245.0 | 31.0 | 7.9 | 3.0 | 3.0 | 6.0 |"


def test_recording_replaces_the_run_s_backends_and_keeps_the_rest_of_the_document() -> None:
    written = report.record(DOCUMENT, [_row("embedded", service=300.0, cpu=4.0)], "Recorded on 8 cores.")

    assert report.recorded_cpu(written) == {"embedded": 4.0, "postgres": 6.2}
    assert "| embedded | 2000 | 300.0 | 30.0 | 10.0 | 2.0 | 2.0 | 4.0 |" in written
    assert "Recorded on 8 cores." in written and "Recorded on 2 cores." not in written
    assert written.startswith(DOCUMENT.split(BEGIN)[0]) and written.endswith(DOCUMENT.split(END)[1])
    block = written.split(BEGIN)[1].split(END)[0]
    assert block.index("| embedded |") < block.index("| postgres |")


def _events_row(backend: str = "embedded", without: float = 200.0, service: float = 190.0) -> report.EventsRow:
    return report.EventsRow(backend, 2000, without, service, cpu_ms=9.0, events=1.0, posts=0.04)


def test_it_says_regression_when_events_cost_more_than_a_tenth_of_the_throughput() -> None:
    lines = report.events_checks([_events_row("embedded", service=179.9), _events_row("postgres", service=180.0)])

    assert lines == [
        "REGRESSION: embedded: with events 179.9 alerts/s end to end is 0.90x the 200.0 without them (floor 0.9x)",
        "OK: postgres: with events 180.0 alerts/s end to end is 0.90x the 200.0 without them (floor 0.9x)",
    ]


def test_an_alert_whose_event_is_missing_or_doubled_at_the_hook_is_a_regression() -> None:
    assert report.events_check("embedded+events", 2000, 2000, 2000) == (
        "OK: embedded+events: 2000 of 2000 alerts with their event at the hook exactly once"
    )
    assert report.events_check("postgres+events", 2000, 1999, 2000) == (
        "REGRESSION: postgres+events: 1999 of 2000 alerts with their event at the hook exactly once "
        "(2000 events received in all)"
    )
    assert report.events_check("embedded+events", 2000, 2000, 2001).startswith("REGRESSION: ")


def test_the_events_table_gives_each_backend_both_throughputs_their_ratio_cpu_and_batching() -> None:
    lines = report.events_table([_events_row(service=185.0)]).splitlines()
    assert lines[0] == "| " + " | ".join(report.EVENTS_HEADER) + " |"
    assert lines[2] == "| embedded | 2000 | 200.0 | 185.0 | 0.93 | 9.0 | 1.00 | 0.040 |"


def test_recording_writes_both_tables_and_reads_the_cpu_figures_from_the_first_only() -> None:
    once = report.record(DOCUMENT, [_row("embedded", cpu=4.0)], "Recorded on 8 cores.", [_events_row("embedded")])
    twice = report.record(once, [_row("postgres", cpu=7.0)], "Recorded again.", [_events_row("postgres")])

    assert report.recorded_cpu(twice) == {"embedded": 4.0, "postgres": 7.0}
    block = twice.split(BEGIN)[1].split(END)[0]
    assert "| embedded | 2000 | 200.0 | 190.0 | 0.95 | 9.0 | 1.00 | 0.040 |" in block
    assert "| postgres | 2000 | 200.0 | 190.0 | 0.95 | 9.0 | 1.00 | 0.040 |" in block
    assert block.index("| " + " | ".join(report.EVENTS_HEADER)) > block.index("| postgres | 2000 | 240.0")
    assert block.count("| embedded |") == 2 and "Recorded again." in block and "8 cores" not in block
