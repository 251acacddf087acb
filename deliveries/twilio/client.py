"""The only module that calls Twilio's API.

It turns every way a POST to Twilio can end into a `SendResult` whose `outcome` carries the retry
policy (see errors.classify_*). Retry decisions are made by deliveries.services, never here and
never by the SDK: the async SDK client re-POSTs after a 500, which can text a person twice.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from deliveries import status as statuses
from deliveries.status import Status
from deliveries.twilio.errors import Outcome, classify_exception, classify_rest_error, describe


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    duration_ms: int
    http_status: int | None = None
    twilio_code: int | None = None
    twilio_message: str = ""
    twilio_request_id: str = ""
    sid: str = ""
    status: Status = Status.QUEUED  # ours, for what Twilio said of an accepted message


class _HttpClient(TwilioHttpClient):
    """The SDK's own HTTP client (requests), remembering the last answer's `Twilio-Request-Id`: the id
    Twilio support asks for, which the SDK drops when it raises TwilioRestException. Nothing is retried
    (requests' default adapter makes one try) and no redirect is followed: a second POST could text a
    person twice, so deliveries.services decides (errors.classify_exception says what is safe to retry)."""

    last_request_id: str = ""

    def __init__(self, timeout: float) -> None:
        super().__init__(timeout=timeout, request_hooks={"response": [self._remember]})

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        self.last_request_id = response.headers.get("Twilio-Request-Id", "")
        return response


_local = threading.local()


def http_client() -> _HttpClient:
    """This thread's client (a requests Session is not promised thread-safe). Credentials travel with
    each request, so one client serves every Twilio account."""
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = _HttpClient(timeout=settings.TWILIO_TIMEOUT_SECONDS)
    client.timeout = settings.TWILIO_TIMEOUT_SECONDS  # the SDK's default is no timeout at all
    client.last_request_id = ""
    return client


def rest_client(account_sid: str, auth_token: str) -> Client:
    client = Client(account_sid, auth_token, http_client=http_client())
    if settings.TWILIO_API_BASE_URL:
        client.api.base_url = settings.TWILIO_API_BASE_URL
    return client


def send_sms(
    *,
    account_sid: str,
    auth_token: str,
    to: str,
    from_: str,
    body: str,
    validity_period: int,
    status_callback: str = "",
) -> SendResult:
    """POST one message. Never raises for an HTTP or network failure: it returns the outcome."""
    params: dict[str, Any] = {"to": to, "body": body, "validity_period": validity_period}
    if from_.startswith("MG"):
        params["messaging_service_sid"] = from_
    else:
        params["from_"] = from_
    if status_callback:
        params["status_callback"] = status_callback
    http = http_client()
    started = time.monotonic()
    try:
        message = rest_client(account_sid, auth_token).messages.create(**params)
    except TwilioRestException as exc:
        return SendResult(
            outcome=classify_rest_error(exc.status, exc.code),
            duration_ms=ms_since(started),
            http_status=exc.status,
            twilio_code=exc.code,
            twilio_message=rest_error_message(exc),
            twilio_request_id=http.last_request_id,
        )
    except Exception as exc:  # noqa: BLE001 - every failure must become an outcome, not a lost task
        return SendResult(
            outcome=classify_exception(exc),
            duration_ms=ms_since(started),
            twilio_message=describe(exc),
            twilio_request_id=http.last_request_id,
        )
    return SendResult(
        outcome=Outcome.ACCEPTED,
        duration_ms=ms_since(started),
        http_status=201,
        twilio_request_id=http.last_request_id,
        sid=message.sid or "",
        status=statuses.from_twilio(message.status or "") or Status.QUEUED,
        twilio_code=message.error_code or None,
        twilio_message=message.error_message or "",
    )


class LookupOutcome(enum.StrEnum):
    FOUND = "found"
    NOT_FOUND = "not_found"
    FAILED = "failed"  # could not ask: try again later


@dataclass(frozen=True)
class LookupResult:
    outcome: LookupOutcome
    duration_ms: int
    sid: str = ""
    status: Status = Status.QUEUED  # ours, for the status Twilio reports for the message found
    http_status: int | None = None
    twilio_code: int | None = None
    twilio_message: str = ""
    twilio_request_id: str = ""


def find_message(*, account_sid: str, auth_token: str, to: str, from_: str, body: str, since: datetime) -> LookupResult:
    """Look for a message we may have created after an ambiguous answer. Twilio has no idempotency
    key, so "the same message" means: same To, same sender, same body, created after `since`.
    Only the newest page is read: the message, if it exists, is minutes old."""
    http = http_client()
    started = time.monotonic()
    filters: dict[str, Any] = {"to": to, "limit": 50, "page_size": 50}
    if not from_.startswith("MG"):
        filters["from_"] = from_
    try:
        messages = rest_client(account_sid, auth_token).messages.list(**filters)
    except TwilioRestException as exc:
        return LookupResult(
            LookupOutcome.FAILED,
            ms_since(started),
            http_status=exc.status,
            twilio_code=exc.code,
            twilio_message=rest_error_message(exc),
            twilio_request_id=http.last_request_id,
        )
    except Exception as exc:  # noqa: BLE001 - a failed lookup is retried later, never fatal
        return LookupResult(
            LookupOutcome.FAILED,
            ms_since(started),
            twilio_message=describe(exc),
            twilio_request_id=http.last_request_id,
        )
    for message in messages:
        created = message.date_created
        if (
            message.body == body
            and (created is None or created >= since - timedelta(seconds=30))
            and (not from_.startswith("MG") or message.messaging_service_sid == from_)
        ):
            return LookupResult(
                LookupOutcome.FOUND,
                ms_since(started),
                sid=message.sid or "",
                status=statuses.from_twilio(message.status or "") or Status.QUEUED,
                http_status=200,
                twilio_request_id=http.last_request_id,
            )
    return LookupResult(
        LookupOutcome.NOT_FOUND, ms_since(started), http_status=200, twilio_request_id=http.last_request_id
    )


def rest_error_message(exc: TwilioRestException) -> str:
    # The SDK prefixes Twilio's own message with its own words; keep Twilio's, as its docs word it.
    message = str(exc.msg or "")
    for prefix in ("Unable to create record: ", "Unable to fetch page: "):
        message = message.removeprefix(prefix)
    return message[:1000]


def ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
