"""The web workers share callers' kept-alive connections (config/gunicorn_worker.py): a worker whose
threads are all busy leaves new connections to the others."""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.harness import free_port
from tests.conftest import ROOT, wait_for


def _gunicorn(worker_class: str, workers: int, threads: int, log: Path) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "tests.deploy.slow_app",
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            worker_class,
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--keep-alive",
            "30",
        ],  # fmt: skip
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: log.read_text().count("Booting worker") == workers, timeout=30, interval=0.1)
        time.sleep(0.5)  # the workers' loops are listening
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.fixture
def balanced(tmp_path: Path) -> Iterator[int]:
    yield from _gunicorn("config.gunicorn_worker.BalancedThreadWorker", 2, 1, tmp_path / "gunicorn.log")


def _burst(port: int, callers: int, requests_each: int) -> list[list[tuple[int, str]]]:
    """`callers` kept-alive connections opened at once, each sending `requests_each` requests in turn:
    (status, serving pid) of each, per connection."""
    answers: list[list[tuple[int, str]]] = [[] for _ in range(callers)]
    start = threading.Barrier(callers)

    def caller(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        start.wait()
        for _ in range(requests_each):
            conn.request("GET", "/")
            response = conn.getresponse()
            answers[n].append((response.status, response.read().decode()))
        conn.close()

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_two_connections_opened_at_once_go_to_two_workers_every_time(balanced: int) -> None:
    for _ in range(5):
        first, second = _burst(balanced, callers=2, requests_each=1)
        assert first[0][0] == second[0][0] == 200
        assert first[0][1] != second[0][1]  # one thread each: the busy worker left the second to the other


def test_more_callers_than_threads_are_all_served_and_keep_their_worker(balanced: int) -> None:
    answers = _burst(balanced, callers=6, requests_each=3)

    assert all(status == 200 for connection in answers for status, _ in connection)
    # A kept-alive connection stays with the worker that accepted it...
    assert all(len({pid for _, pid in connection}) == 1 for connection in answers)
    # ...and the connections are spread over both workers.
    assert len({connection[0][1] for connection in answers}) == 2


def test_a_connection_waits_its_turn_not_for_the_others_to_finish(balanced: int) -> None:
    """Six callers, two threads in all, calls of 50 ms: a worker whose threads are busy still takes a
    waiting connection soon, so every caller's first answer comes before any other caller has had all
    of theirs (without that, the last callers waited for the first to finish)."""
    first_answers, last_answers = [], []
    answers = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def caller() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", balanced, timeout=60)
        start.wait()
        times = []
        for _ in range(6):
            conn.request("GET", "/?sleep=0.05")
            response = conn.getresponse()
            answers.append(response.status)
            response.read()
            times.append(time.monotonic())
        conn.close()
        with lock:
            first_answers.append(times[0])
            last_answers.append(times[-1])

    threads = [threading.Thread(target=caller) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert answers == [200] * 36
    assert max(first_answers) < min(last_answers)
