"""`make demo` on a machine with no account: bin/demo starts the service as `make run` does beside the
fake LimaCharlie and Twilio, plays its story through the real endpoints, and (with --once) stops. Its
outcomes are read from the demo's own database, in its own folder."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.chaos.harness import free_port

ROOT = Path(__file__).resolve().parent.parent


def _rows(database: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(database) as connection:
        return connection.execute(query).fetchall()


def test_the_demo_plays_its_story_in_its_own_folder_and_stops_everything(tmp_path: Path) -> None:
    var_dir, port = tmp_path / "demo", free_port()
    # What a user's shell may hold for `make run` must not reach the demo.
    env = {**os.environ, "DEMO_VAR_DIR": str(var_dir), "DEMO_PORT": str(port)}
    env["DATABASE_URL"] = "postgres://nobody@127.0.0.1:1/not-the-demos"

    done = subprocess.run(
        [sys.executable, str(ROOT / "bin/demo"), "--once"], env=env, cwd=ROOT, capture_output=True, timeout=150
    )

    output = done.stdout.decode()
    assert done.returncode == 0, output + done.stderr.decode() + (var_dir / "run.log").read_text()
    deliveries = "SELECT channel, to_number, status, hold, error_code, ack_channel FROM deliveries_delivery"
    rows = _rows(var_dir / "db.sqlite3", deliveries)
    acknowledged = {(to, ack_channel) for (_, to, *_, ack_channel) in rows if ack_channel}
    assert acknowledged == {("+14155550100", "sms"), ("+14155550101", "voice")}
    assert [row[2:5] for row in rows if row[1] == "+14155550198"] == [("failed", "", 21211)]
    carol = sorted(row[2:4] for row in rows if row[1] == "+14155550102")
    assert carol[-1] == ("suppressed", "recipient_limit") and len(carol) == 4
    assert [row[:3] for row in rows if row[0] == "voice"] == [("voice", "+14155550101", "delivered")]
    replies = _rows(var_dir / "db.sqlite3", "SELECT from_number, meaning FROM deliveries_inboundmessage")
    assert replies == [("+14155550100", "ack")]

    assert f"http://127.0.0.1:{port}/admin/" in output and "login: demo" in output
    assert "Stopping" in output
    left = subprocess.run(["pgrep", "-f", f"127.0.0.1:{port}"], capture_output=True)
    assert left.returncode == 1, left.stdout  # nothing of the demo's service is left running
