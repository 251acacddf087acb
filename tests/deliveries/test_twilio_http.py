"""The Twilio client reads the environment's proxy and CA-bundle settings once, when it is made, and
keeps honouring them (requests would otherwise read them again for every request)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deliveries.twilio.client import _HeaderKeepingClient

PROXY = "http://proxy.example:3128"
ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_a_proxy_in_the_environment_carries_the_requests_to_twilio(clean_env: pytest.MonkeyPatch, settings) -> None:
    settings.TWILIO_API_BASE_URL = ""
    clean_env.setenv("HTTPS_PROXY", PROXY)

    client = _HeaderKeepingClient(timeout=5)

    assert client.session is not None and client.session.proxies.get("https") == PROXY
    assert client.session.trust_env is False  # nothing is read from the environment per request


def test_twilio_s_address_in_no_proxy_goes_direct(clean_env: pytest.MonkeyPatch, settings) -> None:
    settings.TWILIO_API_BASE_URL = ""
    clean_env.setenv("HTTPS_PROXY", PROXY)
    clean_env.setenv("NO_PROXY", "api.twilio.com")

    assert _HeaderKeepingClient(timeout=5).session.proxies == {}


def test_a_ca_bundle_in_the_environment_verifies_twilio_s_certificate(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corporate.pem")

    assert _HeaderKeepingClient(timeout=5).session.verify == "/etc/ssl/corporate.pem"
    clean_env.delenv("REQUESTS_CA_BUNDLE")
    assert _HeaderKeepingClient(timeout=5).session.verify is True


def test_warming_up_loads_the_message_and_call_resources_without_a_request() -> None:
    # In a fresh interpreter: this one may have loaded them already. The fake base URL is unreachable,
    # so a request would fail the script.
    script = (
        "import django, sys; django.setup()\n"
        "from deliveries.twilio import client\n"
        "loaded = lambda: {m for m in sys.modules if m.startswith('twilio.rest.api.v2010.account.')}\n"
        "before = loaded(); client.warm_up(); print(sorted(loaded() - before))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "TWILIO_API_BASE_URL": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert "'twilio.rest.api.v2010.account.message'" in done.stdout
    assert "'twilio.rest.api.v2010.account.call'" in done.stdout
