"""Start-up refuses a malformed setting and names the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _start(**overrides: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **overrides}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TWILIO_TIMEOUT_SECONDS", "ten", "TWILIO_TIMEOUT_SECONDS must be a whole number, got 'ten'"),
        ("TWILIO_VALIDITY_PERIOD", "40000", "TWILIO_VALIDITY_PERIOD must be between 1 and 36000, got 40000"),
        ("SMS_MAX_BODY_CHARS", "2000", "SMS_MAX_BODY_CHARS must be between 20 and 1600, got 2000"),
        ("LC_API_URL", "api.limacharlie.io", "LC_API_URL must be an absolute http:// or https:// URL"),
        ("DEBUG", "maybe", "DEBUG must be true or false, got 'maybe'"),
        ("SECRET_KEY", "", "SECRET_KEY is not set"),
        # Issue 10, item 6: a short key was used as given (SECRET_KEY=x started).
        ("SECRET_KEY", "x", "SECRET_KEY is shorter than 32 characters"),
        ("SECRET_KEY", "   \n", "SECRET_KEY is not set"),
        ("LC_SHARED_SECRET", "short-shared-secret", "LC_SHARED_SECRET is shorter than 32 characters"),
        ("LC_SHARED_SECRET_PREVIOUS", "old", "LC_SHARED_SECRET_PREVIOUS is shorter than 32 characters"),
    ],
)
def test_a_malformed_setting_stops_start_up_naming_the_variable(name: str, value: str, message: str) -> None:
    result = _start(**{name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_a_bad_encryption_key_is_named_without_showing_it() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from deliveries.fields import fernet; fernet()"],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "FIELD_ENCRYPTION_KEY": "hunter2-not-a-key"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "FIELD_ENCRYPTION_KEY must be one or more comma-separated Fernet keys" in result.stderr
    assert "hunter2" not in result.stderr


def test_a_secret_may_come_from_a_file_and_its_trailing_newline_is_not_part_of_it(tmp_path: Path) -> None:
    # A file written by `echo` or an editor ends in a newline; read as-is it broke every signature.
    secret_file = tmp_path / "lc"
    secret_file.write_text("from-a-file-" + "x" * 32 + "\n")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "LC_SHARED_SECRET_FILE": str(secret_file)}
    env.pop("LC_SHARED_SECRET")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.LC_SHARED_SECRET == 'from-a-file-' + 'x' * 32)",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "True", result.stderr


def _print_setting(expression: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **overrides}
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); from django.conf import settings; print({expression})"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_white_space_only_shared_secret_counts_as_unset() -> None:
    # It was used as the key: a request signed with "\n" verified.
    result = _print_setting("repr(settings.LC_SHARED_SECRET)", LC_SHARED_SECRET=" \n\t")
    assert result.stdout.strip() == "''", result.stderr


def test_a_prometheus_folder_that_does_not_exist_yet_is_created(tmp_path: Path) -> None:
    # `make run` runs `migrate` before `bin/run` creates the folder: every command failed.
    folder = tmp_path / "not-yet" / "prometheus"
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "PROMETHEUS_MULTIPROC_DIR": str(folder)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert folder.is_dir()
