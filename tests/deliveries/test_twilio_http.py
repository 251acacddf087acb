"""The Twilio client: the SDK's own HTTP client (requests). It sends the form Twilio documents, keeps
Twilio's request id, and tells a failure to connect (nothing reached Twilio: safe to retry) from every
later failure (the message may exist: never blindly re-POST)."""

from __future__ import annotations

import base64
import socket

import pytest
import requests
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
)

from deliveries.twilio import client
from deliveries.twilio.errors import Outcome, classify_exception, describe
from tests.fakes.twilio import FakeTwilio

URL = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json"
TWILIO = urllib3.HTTPSConnectionPool("api.twilio.com")
CONNECTION = urllib3.connection.HTTPSConnection("api.twilio.com")


def test_a_message_reaches_twilio_as_a_form_with_basic_auth(fake_twilio: FakeTwilio, tenant) -> None:
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
        == "Basic " + base64.b64encode(f"{tenant.account_sid}:{tenant.auth_token}".encode()).decode()
    )
    assert headers["user-agent"].startswith("twilio-python/")


def test_a_refused_connection_through_the_client_is_not_processed(settings, tenant) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings.TWILIO_API_BASE_URL = f"http://127.0.0.1:{port}"  # nothing listens there now

    result = client.send_sms(
        account_sid=tenant.account_sid,
        auth_token=tenant.auth_token,
        to="+15005550001",
        from_="+15005550006",
        body="x",
        validity_period=600,
    )

    assert result.outcome == Outcome.NOT_PROCESSED
    assert tenant.auth_token not in result.twilio_message and tenant.account_sid not in result.twilio_message


def _wrapped(reason: Exception) -> MaxRetryError:
    return MaxRetryError(TWILIO, URL, reason)


@pytest.mark.parametrize(
    "failure",
    [
        requests.ConnectionError(_wrapped(NewConnectionError(CONNECTION, "[Errno 111] Connection refused"))),
        requests.ConnectionError(
            _wrapped(NameResolutionError("api.twilio.com", CONNECTION, socket.gaierror(-2, "Name unknown")))
        ),
        requests.ConnectTimeout(_wrapped(ConnectTimeoutError(CONNECTION, "Connection timed out"))),
        requests.exceptions.ProxyError(
            _wrapped(ProxyError("Unable to connect to proxy", NewConnectionError(CONNECTION, "refused")))
        ),
    ],
    ids=["refused", "unresolvable", "connect timeout", "proxy unreachable"],
)
def test_a_failure_to_connect_is_not_processed(failure: Exception) -> None:
    assert classify_exception(failure) == Outcome.NOT_PROCESSED


@pytest.mark.parametrize(
    "failure",
    [
        requests.ReadTimeout(ReadTimeoutError(TWILIO, URL, "Read timed out.")),
        requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))),
        requests.exceptions.ProxyError(
            _wrapped(ProxyError("Unable to connect to proxy", OSError("Tunnel failed: 502")))
        ),
    ],
    ids=["read timeout", "reset after sending", "proxy failed upstream"],
)
def test_a_failure_after_the_request_left_is_ambiguous(failure: Exception) -> None:
    assert classify_exception(failure) == Outcome.AMBIGUOUS


def test_a_failure_is_described_by_its_class_never_its_message_which_can_hold_the_account_sid() -> None:
    failure = requests.ReadTimeout(
        ReadTimeoutError(TWILIO, "/2010-04-01/Accounts/AC0123/Messages.json", "Read timed out.")
    )

    assert describe(failure) == "requests.exceptions.ReadTimeout"
