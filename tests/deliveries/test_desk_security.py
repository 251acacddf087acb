"""Security of the desk: login lockout, a configurable admin path, secure cookies over HTTPS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import DESK_PASSWORD, make_user

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.django_db
def test_repeated_wrong_passwords_lock_the_login_even_for_the_right_one(settings: object) -> None:
    user = make_user("operator")
    client = Client()
    url = reverse("admin:login")
    for _ in range(5):  # AXES_FAILURE_LIMIT
        wrong = client.post(url, {"username": user.username, "password": "guess", "next": "/admin/"})
        assert wrong.status_code in (200, 429)
    locked = client.post(url, {"username": user.username, "password": DESK_PASSWORD, "next": "/admin/"})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session

    # Another person at the same address is not locked out by someone else's guesses.
    other = make_user("soc_lead")
    ok = Client().post(url, {"username": other.username, "password": DESK_PASSWORD, "next": "/admin/"})
    assert ok.status_code == 302 and ok["Location"] == "/admin/"


@pytest.mark.django_db
def test_a_correct_login_before_the_limit_gets_in() -> None:
    user = make_user("soc_lead")
    client = Client()
    url = reverse("admin:login")
    for _ in range(2):
        assert client.post(url, {"username": user.username, "password": "nope"}).status_code == 200
    response = client.post(url, {"username": user.username, "password": DESK_PASSWORD, "next": "/admin/"})
    assert response.status_code == 302 and client.get("/admin/").status_code == 200


def _settings_of(*names: str, **env: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import django; django.setup(); from django.conf import settings; from django.urls import reverse; "
        f"print(reverse('admin:index'), *[getattr(settings, n) for n in {names!r}])"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_admin_path_is_configurable() -> None:
    result = _settings_of(ADMIN_URL="desk-7f3a/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "/desk-7f3a/"


def test_a_malformed_admin_path_stops_start_up() -> None:
    result = _settings_of(ADMIN_URL="/admin")
    assert result.returncode != 0 and "ADMIN_URL must be a relative path ending in '/'" in result.stderr


def test_cookies_are_secure_when_served_over_https_and_not_otherwise() -> None:
    https = _settings_of("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", PUBLIC_BASE_URL="https://sms.example.com")
    http = _settings_of("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", PUBLIC_BASE_URL="http://127.0.0.1:8000")
    assert https.stdout.split() == ["/admin/", "True", "True"], https.stderr
    assert http.stdout.split() == ["/admin/", "False", "False"], http.stderr


def test_the_resend_maximum_is_a_checked_setting() -> None:
    assert _settings_of("ADMIN_RESEND_MAX").stdout.split() == ["/admin/", "500"]
    assert _settings_of("ADMIN_RESEND_MAX", ADMIN_RESEND_MAX="20").stdout.split() == ["/admin/", "20"]
    bad = _settings_of("ADMIN_RESEND_MAX", ADMIN_RESEND_MAX="0")
    assert "ADMIN_RESEND_MAX must be between 1 and 10000, got 0" in bad.stderr
