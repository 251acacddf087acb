"""Security of the desk: login lockout, a configurable admin path, secure cookies over HTTPS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    http = _settings_of(  # plain HTTP starts only with DEBUG (a development machine)
        "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", PUBLIC_BASE_URL="http://127.0.0.1:8000", DEBUG="true"
    )
    assert https.stdout.split() == ["/admin/", "True", "True"], https.stderr
    assert http.stdout.split() == ["/admin/", "False", "False"], http.stderr


def test_the_resend_maximum_is_a_checked_setting() -> None:
    assert _settings_of("ADMIN_RESEND_MAX").stdout.split() == ["/admin/", "500"]
    assert _settings_of("ADMIN_RESEND_MAX", ADMIN_RESEND_MAX="20").stdout.split() == ["/admin/", "20"]
    bad = _settings_of("ADMIN_RESEND_MAX", ADMIN_RESEND_MAX="0")
    assert "ADMIN_RESEND_MAX must be between 1 and 10000, got 0" in bad.stderr


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post"])
def test_a_resend_of_an_id_that_is_not_a_uuid_is_refused_not_a_500(method: str) -> None:
    # Issue 10, item 10: the ids reached the query as they were, and Django raised ValidationError.
    client = Client()
    client.force_login(make_user("operator"))
    url = reverse("admin:deliveries_delivery_resend")
    response = getattr(client, method)(url, {"ids": ["not-a-uuid"], "reason": "x"})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:deliveries_delivery_changelist")


# --- the lockout behind a proxy --------------------------------------------------


def _login_through(proxy_port: int, source: str, username: str, password: str, forwarded_for: str = "") -> int:
    """One login as a browser at address `source` makes it (127.0.0.0/8 is all loopback on Linux):
    fetch the form through the proxy, post it back, return the status."""
    import http.client
    import re
    from urllib.parse import urlencode

    def call(method: str, body: str | None = None, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
        conn = http.client.HTTPConnection("127.0.0.1", proxy_port, source_address=(source, 0), timeout=30)
        try:
            extra = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
            conn.request(method, "/admin/login/", body=body, headers={**extra, **(headers or {})})
            answer = conn.getresponse()
            return answer.status, answer.read().decode(), answer.getheader("Set-Cookie") or ""
        finally:
            conn.close()

    _, page, cookie = call("GET")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    csrf = re.search(r"csrftoken=([^;]+)", cookie)
    assert token and csrf, page[:500]
    form = urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": token.group(1), "next": "/admin/"}
    )
    status, _, _ = call(
        "POST",
        form,
        {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={csrf.group(1)}"},
    )
    return status


@pytest.mark.django_db(transaction=True)
def test_behind_the_proxy_someone_elses_guesses_do_not_lock_a_soc_lead_out(live_server: object) -> None:
    from urllib.parse import urlsplit

    from tests.proxy import ReverseProxy

    lead = make_user("soc_lead")
    upstream = urlsplit(str(live_server))
    with ReverseProxy("127.0.0.1", upstream.port or 80) as proxy:
        # The attacker guesses the lead's password from 127.0.0.2, and claims to be the lead's address.
        statuses = [
            _login_through(proxy.port, "127.0.0.2", lead.username, "guess", forwarded_for="127.0.0.3") for _ in range(6)
        ]
        assert statuses == [200] * 4 + [429] * 2  # the fifth failure locks the attacker's address

        # The lead, at 127.0.0.3, still gets in. Before: every login came from the proxy's 127.0.0.1,
        # so the attacker's five guesses locked the lead out (429).
        assert _login_through(proxy.port, "127.0.0.3", lead.username, DESK_PASSWORD) == 302


@pytest.mark.parametrize(
    ("remote", "forwarded", "client"),
    [
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # not from a trusted proxy: the header is ignored
        ("127.0.0.1", "198.51.100.1", "198.51.100.1"),
        ("127.0.0.1", "198.51.100.66, 198.51.100.1", "198.51.100.1"),  # the left part is the client's claim
        ("127.0.0.1", "not-an-address, 198.51.100.1", "198.51.100.1"),
        ("127.0.0.1", "198.51.100.1, not-an-address", "127.0.0.1"),
        ("127.0.0.1", "", "127.0.0.1"),
    ],
)
def test_the_client_address_comes_from_a_trusted_proxys_header_only(remote: str, forwarded: str, client: str) -> None:
    from django.test import RequestFactory

    from config.client_ip import client_ip

    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == client


def test_an_admin_session_lasts_a_shift_not_two_weeks(settings: Any) -> None:
    assert settings.SESSION_COOKIE_AGE <= 12 * 3600


def test_check_deploy_is_clean_over_https() -> None:
    import secrets

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PUBLIC_BASE_URL": "https://sms.example.com",
        "SECRET_KEY": secrets.token_urlsafe(50),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr  # HSTS and the TLS redirect were missing (W004, W008)
