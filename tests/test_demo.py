"""`make demo` on a machine with no account: bin/demo starts the service as `make run` does beside the
fake LimaCharlie and Twilio, plays its story through the real endpoints, and (with --once) stops. Its
outcomes are read from the demo's own database, in its own folder, and what the fake LimaCharlie's hook
received from the lines the demo prints for each event."""

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
    asked = "alert_id IN (SELECT alert_id FROM deliveries_approval)"
    columns = "channel, to_number, status, hold, error_code, ack_channel"
    rows = _rows(var_dir / "db.sqlite3", f"SELECT {columns} FROM deliveries_delivery WHERE NOT coalesce({asked}, 0)")
    acknowledged = {(to, ack_channel) for (_, to, *_, ack_channel) in rows if ack_channel}
    assert acknowledged == {("+14155550100", "sms"), ("+14155550101", "voice")}
    assert [row[2:5] for row in rows if row[1] == "+14155550198"] == [("failed", "", 21211)]
    carol = sorted(row[2:4] for row in rows if row[1] == "+14155550102")
    assert carol[-1] == ("suppressed", "recipient_limit") and len(carol) == 4
    assert [row[:3] for row in rows if row[0] == "voice"] == [("voice", "+14155550101", "delivered")]
    replies = _rows(var_dir / "db.sqlite3", "SELECT from_number, meaning FROM deliveries_inboundmessage")
    assert sorted(replies) == [("+14155550100", "ack"), ("+14155550101", "ack")]  # Bob's is his approval

    # The approval was decided by Bob's text, and its event reached LimaCharlie's hook exactly once.
    approvals = _rows(var_dir / "db.sqlite3", "SELECT decision, decided_by, decided_channel FROM deliveries_approval")
    assert approvals == [("approved", "+14155550101", "sms")]
    questions = _rows(var_dir / "db.sqlite3", f"SELECT to_number, ack_channel FROM deliveries_delivery WHERE {asked}")
    assert sorted((to, channel or "") for to, channel in questions) == [("+14155550100", ""), ("+14155550101", "sms")]
    outbox = "SELECT kind, sent_at IS NOT NULL FROM deliveries_outboundevent WHERE kind = 'approved'"
    assert _rows(var_dir / "db.sqlite3", outbox) == [("approved", 1)]
    received = [line.split()[2:4] for line in output.splitlines() if line.startswith("  [LimaCharlie's hook] ")]
    assert [event for event in received if event[0] == "approved"] == [["approved", "+14155550101"]]
    assert sorted(kind for kind, _ in received) == ["acknowledged", "acknowledged", "approved", "escalated", "failed"]

    assert f"http://127.0.0.1:{port}/admin/" in output and "login: demo" in output
    assert "Stopping" in output
    left = subprocess.run(["pgrep", "-f", f"127.0.0.1:{port}"], capture_output=True)
    assert left.returncode == 1, left.stdout  # nothing of the demo's service is left running
