"""The Twilio client's HTTP: urllib3 under the SDK, without requests. It sends what requests sent, reads
the environment's proxy and CA-bundle settings once, and tells a failure to connect (nothing reached
Twilio: safe to retry) from every later failure (the message may exist: never blindly re-POST)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
)

from deliveries.twilio import client
from deliveries.twilio.errors import Outcome, classify_exception, describe
from tests.fakes.twilio import FakeTwilio

PROXY = "http://proxy.example:3128"
TWILIO = urllib3.HTTPSConnectionPool("api.twilio.com")
CONNECTION = urllib3.connection.HTTPSConnection("api.twilio.com")
ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_a_proxy_in_the_environment_carries_the_requests_to_twilio(clean_env: pytest.MonkeyPatch, settings) -> None:
    settings.TWILIO_API_BASE_URL = ""
    clean_env.setenv("HTTPS_PROXY", "http://user:p%40ss@proxy.example:3128")

    pool = client._new_pool()

    assert isinstance(pool, urllib3.ProxyManager)
    assert pool.proxy is not None and pool.proxy.url == PROXY  # the credentials travel in a header, not the URL
    assert pool.proxy_headers == urllib3.make_headers(proxy_basic_auth="user:p@ss")


def test_twilio_s_address_in_no_proxy_goes_direct(clean_env: pytest.MonkeyPatch, settings) -> None:
    settings.TWILIO_API_BASE_URL = ""
    clean_env.setenv("HTTPS_PROXY", PROXY)
    clean_env.setenv("NO_PROXY", "api.twilio.com")

    assert not isinstance(client._new_pool(), urllib3.ProxyManager)


def test_a_ca_bundle_in_the_environment_verifies_twilio_s_certificate(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corporate.pem")

    pool = client._new_pool()
    assert (pool.connection_pool_kw["ca_certs"], pool.connection_pool_kw["cert_reqs"]) == (
        "/etc/ssl/corporate.pem",
        "CERT_REQUIRED",
    )
    clean_env.delenv("REQUESTS_CA_BUNDLE")
    assert client._new_pool().connection_pool_kw["ca_certs"].endswith("certifi/cacert.pem")


def test_a_message_reaches_twilio_as_the_form_requests_would_have_sent(fake_twilio: FakeTwilio, tenant) -> None:
    result = client.send_sms(
        account_sid=tenant.account_sid,
        auth_token=tenant.auth_token,
        to="+15005550001",
        from_="+15005550006",
        body="Détection: élevé & urgent 100%",
        validity_period=600,
        status_callback="https://ext.example/twilio/status/1?x=1",
    )

    assert result.outcome == Outcome.ACCEPTED and result.twilio_request_id.startswith("RQ")
    assert fake_twilio.posts() == [
        {
            "To": "+15005550001",
            "From": "+15005550006",
            "Body": "Détection: élevé & urgent 100%",
            "ValidityPeriod": "600",
            "StatusCallback": "https://ext.example/twilio/status/1?x=1",
        }
    ]
    headers = {k.lower(): v for k, v in fake_twilio.received[0].headers.items()}
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert (
        headers["authorization"]
        == urllib3.make_headers(basic_auth=f"{tenant.account_sid}:{tenant.auth_token}")["authorization"]
    )
    assert headers["user-agent"].startswith("twilio-python/")


def test_form_encoding_repeats_a_listed_key_and_leaves_out_none() -> None:
    assert client._form({"To": "+1 500", "MediaUrl": ["a", "b&c"], "Skip": None, "N": 3}) == (
        "To=%2B1+500&MediaUrl=a&MediaUrl=b%26c&N=3"
    )


@pytest.mark.parametrize(
    "failure",
    [
        NewConnectionError(CONNECTION, "Failed to establish a new connection: [Errno 111] Connection refused"),
        NameResolutionError("api.twilio.com", CONNECTION, socket.gaierror(-2, "Name or service not known")),
        ConnectTimeoutError(CONNECTION, "Connection to api.twilio.com timed out"),
        ProxyError("Unable to connect to proxy", NewConnectionError(CONNECTION, "refused")),
    ],
    ids=["refused", "unresolvable", "connect timeout", "proxy unreachable"],
)
def test_a_failure_to_connect_is_not_processed(failure: Exception) -> None:
    assert classify_exception(failure) == Outcome.NOT_PROCESSED


@pytest.mark.parametrize(
    "failure",
    [
        ReadTimeoutError(TWILIO, "/2010-04-01/Accounts/AC1/Messages.json", "Read timed out."),
        ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
        ProxyError("Unable to connect to proxy", OSError("Tunnel connection failed: 502")),
    ],
    ids=["read timeout", "reset after sending", "proxy failed upstream"],
)
def test_a_failure_after_the_request_left_is_ambiguous(failure: Exception) -> None:
    assert classify_exception(failure) == Outcome.AMBIGUOUS


def test_a_failure_is_described_by_its_class_never_its_message_which_can_hold_the_account_sid() -> None:
    failure = ReadTimeoutError(TWILIO, "/2010-04-01/Accounts/AC0123/Messages.json", "Read timed out.")

    assert describe(failure) == "urllib3.exceptions.ReadTimeoutError"


def test_each_process_has_its_own_connection_pool_and_its_threads_share_it() -> None:
    pool = client._pool()
    in_another_thread: list[urllib3.PoolManager] = []
    thread = threading.Thread(target=lambda: in_another_thread.append(client._pool()))
    thread.start()
    thread.join()
    assert in_another_thread == [pool]

    script = (
        "import django, os; django.setup()\n"
        "from deliveries.twilio import client\n"
        "parent = id(client._pool())\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if id(client._pool()) != parent else 1)\n"
        "print(os.waitpid(pid, 0)[1])\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "0"), done.stderr


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
