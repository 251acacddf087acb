"""The embedded broker (config/broker.py and its folder in the settings): messages in memory where the
machine has it, one folder per VAR_DIR, and a message taken by exactly one consumer, only once written."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from config import settings as config_settings


def test_the_messages_live_in_memory_in_a_folder_of_this_var_dir(tmp_path: Path) -> None:
    if not os.access("/dev/shm", os.W_OK):
        pytest.skip("this machine has no writable /dev/shm")  # the fallback is tested below
    first = config_settings._embedded_broker_dir("", tmp_path / "one")
    second = config_settings._embedded_broker_dir("", tmp_path / "two")

    assert first.parent == Path("/dev/shm") and second.parent == Path("/dev/shm")
    assert first != second  # two `make run` instances never read each other's messages
    assert first == config_settings._embedded_broker_dir("", tmp_path / "one")  # the web and the worker agree


def test_embedded_broker_dir_wins_and_without_shared_memory_var_dir_holds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert config_settings._embedded_broker_dir(str(tmp_path / "mine"), tmp_path) == tmp_path / "mine"

    monkeypatch.setattr(config_settings.os, "access", lambda path, mode: False)
    assert config_settings._embedded_broker_dir("", tmp_path) == tmp_path / "broker"


def _connection(folder: Path) -> Any:
    return Connection(
        "filesystem://",
        transport="config.broker:Transport",
        transport_options={"data_folder_in": str(folder), "data_folder_out": str(folder), "store_processed": False},
    )


def test_a_message_is_taken_once_and_leaves_nothing_behind(tmp_path: Path) -> None:
    with _connection(tmp_path) as producer, _connection(tmp_path) as first, _connection(tmp_path) as second:
        queue_a, queue_b = producer.SimpleQueue("q"), first.SimpleQueue("q")
        queue_c = second.SimpleQueue("q")
        for n in range(3):
            queue_a.put({"n": n})

        got = []
        for queue in (queue_b, queue_c, queue_b):
            message = queue.get(timeout=1)
            message.ack()
            got.append(message.payload["n"])
        with pytest.raises(queue_c.Empty):
            queue_c.get(timeout=0.2)

    assert sorted(got) == [0, 1, 2]  # each once, whichever consumer took it
    assert os.listdir(tmp_path) == []


def test_a_message_being_written_is_not_taken(tmp_path: Path) -> None:
    (tmp_path / "1_half.q.msg.writing").write_bytes(b'{"body": ')  # a producer still writing
    with _connection(tmp_path) as producer, _connection(tmp_path) as consumer:
        producer.SimpleQueue("q").put({"n": 7})
        queue = consumer.SimpleQueue("q")

        message = queue.get(timeout=1)
        message.ack()
        with pytest.raises(queue.Empty):
            queue.get(timeout=0.2)

    assert message.payload == {"n": 7}
    assert os.listdir(tmp_path) == ["1_half.q.msg.writing"]


def _drain(folder: Path, got: list[int]) -> None:
    with _connection(folder) as connection:
        queue = connection.SimpleQueue("q")
        while True:
            try:
                message = queue.get(timeout=0.5)
            except queue.Empty:
                return
            message.ack()
            got.append(message.payload["n"])


def test_workers_taking_from_one_folder_at_once_each_read_whole_messages_once(tmp_path: Path) -> None:
    # In memory where the machine has it, as `make run` keeps it: another filesystem than the system's
    # temporary folder, where upstream moved a message by copying it.
    shared = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else tmp_path
    folder = shared / f"ext-twilio-test-{os.getpid()}-{threading.get_ident()}"
    folder.mkdir()
    try:
        with _connection(folder) as producer:
            queue = producer.SimpleQueue("q")
            for n in range(300):
                queue.put({"n": n})
        got: list[int] = []
        workers = [threading.Thread(target=_drain, args=(folder, got)) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)

        assert sorted(got) == list(range(300))  # none lost, none twice, none read empty
        assert os.listdir(folder) == []
    finally:
        shutil.rmtree(folder, ignore_errors=True)
