"""The security settings: PUBLIC_BASE_URL must be https unless DEBUG or on loopback, and the new limits are read
strictly, each refusal naming its variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def _start(*names: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **overrides}
    code = f"import django; django.setup(); from django.conf import settings; print(*[getattr(settings, n) for n in {names!r}])"
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_a_plain_http_public_base_url_stops_start_up_naming_the_variable() -> None:
    result = _start(PUBLIC_BASE_URL="http://sms.example.com", DEBUG="false")
    assert result.returncode != 0
    assert "PUBLIC_BASE_URL must be an https:// URL" in result.stderr and "DEBUG=true" in result.stderr


def test_plain_http_is_allowed_on_a_development_machine_with_debug() -> None:
    result = _start("PUBLIC_BASE_URL", PUBLIC_BASE_URL="http://127.0.0.1:8000", DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["http://127.0.0.1:8000"]


def test_plain_http_is_allowed_on_this_machine_s_own_loopback_address() -> None:
    """`make demo` serves on 127.0.0.1, which nothing outside this machine can reach."""
    result = _start("PUBLIC_BASE_URL", PUBLIC_BASE_URL="http://127.0.0.1:8100", DEBUG="false")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["http://127.0.0.1:8100"]


def test_the_security_defaults() -> None:
    names = (
        "CODE_LOCK_WRONG_CODES",
        "INBOUND_ANSWER_DAYS",
        "INBOUND_ANSWERS_PER_HOUR",
        "CALL_ALLOWED_COUNTRIES",
        "CALL_MIN_ACK_WITHIN_SECONDS",
        "BROKER_VISIBILITY_TIMEOUT_SECONDS",
    )
    clean = dict.fromkeys(names, "")
    result = _start(*names, **clean)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["5", "30", "5", "[]", "60", "600"]
    listed = _start("CALL_ALLOWED_COUNTRIES", CALL_ALLOWED_COUNTRIES="us, fr")
    assert listed.stdout.strip() == "['US', 'FR']"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CALL_ALLOWED_COUNTRIES", "USA", "CALL_ALLOWED_COUNTRIES must be two-letter country codes"),
        ("CODE_LOCK_WRONG_CODES", "0", "CODE_LOCK_WRONG_CODES must be between 1 and 100, got 0"),
        ("INBOUND_ANSWERS_PER_HOUR", "many", "INBOUND_ANSWERS_PER_HOUR must be a whole number"),
        ("BROKER_VISIBILITY_TIMEOUT_SECONDS", "1", "BROKER_VISIBILITY_TIMEOUT_SECONDS must be between 2 and 86400"),
    ],
)
def test_a_malformed_security_setting_stops_start_up(name: str, value: str, message: str) -> None:
    result = _start(**{name: value})
    assert result.returncode != 0 and message in result.stderr
