"""The only module that talks to Twilio (and the only importer of `twilio`).

It turns every way a POST to Twilio can end into a `SendResult` whose `outcome` carries the
retry policy (see `classify_*`). Retry decisions are made by deliveries.services, never here and
never by the SDK: the async SDK client re-POSTs after a 500, which can text a person twice.
"""

from __future__ import annotations

import enum
import os
from datetime import datetime, timedelta
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

# Twilio codes that mean "nothing was created, try again later" although the HTTP status is 4xx.
NOT_PROCESSED_CODES = frozenset({20429, 21611})
OPTED_OUT_CODE = 21610

# What an operator needs to know about the codes Twilio reports (in answers and status callbacks).
ERROR_MEANINGS = {
    20003: "Twilio refused the credentials (wrong Account SID or Auth Token)",
    20429: "Too many concurrent requests to Twilio",
    20500: "Twilio internal error",
    21211: "Invalid 'To' number",
    21408: "Sending to this region is not enabled on the Twilio account",
    21606: "The 'From' number cannot send SMS",
    21608: "Trial account: the recipient is not a verified number",
    21610: "The recipient texted STOP to this sender (opted out)",
    21611: "The sender's queue is full",
    21612: "Twilio cannot route to this number",
    21614: "The 'To' number is not a mobile number",
    21617: "The body is over 1,600 characters",
    30001: "Queue overflow: Twilio dropped the message",
    30003: "Unreachable handset (switched off or out of coverage; may succeed later)",
    30005: "Unknown handset (the number does not exist)",
    30006: "Landline or unreachable carrier",
    30007: "Filtered by the carrier (spam filtering)",
    30008: "Unknown error from the carrier",
    30500: "Twilio internal error",
}

# Twilio message statuses in the order a message moves through them; callbacks arrive out of order,
# so a status only ever moves to a higher rank, and rank 4 is final.
STATUS_RANK = {
    "accepted": 1, "scheduled": 1, "queued": 1, "sending": 2, "sent": 3,
    "delivered": 4, "undelivered": 4, "failed": 4, "canceled": 4, "read": 4,
}


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    NOT_PROCESSED = "not_processed"  # no message exists: safe to retry
    PERMANENT = "permanent"  # retrying cannot help
    AMBIGUOUS = "ambiguous"  # the message may exist at Twilio: never blindly re-POST


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    duration_ms: int
    http_status: int | None = None
    twilio_code: int | None = None
    twilio_message: str = ""
    twilio_request_id: str = ""
    sid: str = ""
    twilio_status: str = ""


class _HeaderKeepingClient(TwilioHttpClient):
    """Remembers the last response's `Twilio-Request-Id` (the id Twilio support asks for), which the
    SDK drops when it raises TwilioRestException."""

    last_request_id: str = ""

    def request(self, *args: Any, **kwargs: Any) -> Any:
        self.last_request_id = ""
        response = super().request(*args, **kwargs)
        self.last_request_id = response.headers.get("Twilio-Request-Id", "") if response.headers else ""
        return response


_local = threading.local()


def _http_client() -> _HeaderKeepingClient:
    """One HTTP client (one requests.Session, one connection pool) per process and thread.

    requests.Session is not promised thread-safe, and a session inherited across a Celery prefork
    fork would share sockets with the parent, hence the pid check. Credentials travel with each
    request, so one client serves every Twilio account."""
    client = getattr(_local, "client", None)
    if client is None or _local.pid != os.getpid():
        client = _HeaderKeepingClient(timeout=settings.TWILIO_TIMEOUT_SECONDS)
        _local.client, _local.pid = client, os.getpid()
    client.timeout = settings.TWILIO_TIMEOUT_SECONDS  # the SDK's default is no timeout at all
    return client


def _client(account_sid: str, auth_token: str) -> Client:
    client = Client(account_sid, auth_token, http_client=_http_client())
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
    http = _http_client()
    started = time.monotonic()
    try:
        message = _client(account_sid, auth_token).messages.create(**params)
    except TwilioRestException as exc:
        return SendResult(
            outcome=classify_rest_error(exc.status, exc.code),
            duration_ms=_ms_since(started),
            http_status=exc.status,
            twilio_code=exc.code,
            twilio_message=_twilio_message(exc),
            twilio_request_id=http.last_request_id,
        )
    except Exception as exc:  # noqa: BLE001 - every failure must become an outcome, not a lost task
        return SendResult(
            outcome=classify_exception(exc),
            duration_ms=_ms_since(started),
            twilio_message=_describe(exc),
            twilio_request_id=http.last_request_id,
        )
    return SendResult(
        outcome=Outcome.ACCEPTED,
        duration_ms=_ms_since(started),
        http_status=201,
        twilio_request_id=http.last_request_id,
        sid=message.sid or "",
        twilio_status=message.status or "",
        twilio_code=message.error_code or None,
        twilio_message=message.error_message or "",
    )


def signature_valid(*, auth_token: str, url: str, params: dict[str, str], signature: str) -> bool:
    """X-Twilio-Signature check, over the URL exactly as Twilio called it."""
    return bool(signature) and RequestValidator(auth_token).validate(url, params, signature)


class LookupOutcome(enum.StrEnum):
    FOUND = "found"
    NOT_FOUND = "not_found"
    FAILED = "failed"  # could not ask: try again later


@dataclass(frozen=True)
class LookupResult:
    outcome: LookupOutcome
    duration_ms: int
    sid: str = ""
    twilio_status: str = ""
    http_status: int | None = None
    twilio_code: int | None = None
    twilio_message: str = ""
    twilio_request_id: str = ""


def find_message(
    *, account_sid: str, auth_token: str, to: str, from_: str, body: str, since: datetime
) -> LookupResult:
    """Look for a message we may have created after an ambiguous answer. Twilio has no idempotency
    key, so "the same message" means: same To, same sender, same body, created after `since`.
    Only the newest page is read: the message, if it exists, is minutes old."""
    http = _http_client()
    started = time.monotonic()
    filters: dict[str, Any] = {"to": to, "limit": 50, "page_size": 50}
    if not from_.startswith("MG"):
        filters["from_"] = from_
    try:
        messages = _client(account_sid, auth_token).messages.list(**filters)
    except TwilioRestException as exc:
        return LookupResult(LookupOutcome.FAILED, _ms_since(started), http_status=exc.status, twilio_code=exc.code,
                            twilio_message=_twilio_message(exc), twilio_request_id=http.last_request_id)
    except Exception as exc:  # noqa: BLE001 - a failed lookup is retried later, never fatal
        return LookupResult(LookupOutcome.FAILED, _ms_since(started), twilio_message=_describe(exc),
                            twilio_request_id=http.last_request_id)
    for message in messages:
        created = message.date_created
        if message.body == body and (created is None or created >= since - timedelta(seconds=30)) and (
            not from_.startswith("MG") or message.messaging_service_sid == from_
        ):
            return LookupResult(LookupOutcome.FOUND, _ms_since(started), sid=message.sid or "",
                                twilio_status=message.status or "", http_status=200,
                                twilio_request_id=http.last_request_id)
    return LookupResult(LookupOutcome.NOT_FOUND, _ms_since(started), http_status=200,
                        twilio_request_id=http.last_request_id)


def classify_rest_error(status: int | None, code: int | None) -> Outcome:
    """Status first (Twilio warns that codes evolve), codes only for the special cases."""
    if status == 429 or code in NOT_PROCESSED_CODES:
        return Outcome.NOT_PROCESSED
    if status is None or status >= 500:
        return Outcome.AMBIGUOUS
    return Outcome.PERMANENT


def classify_exception(exc: BaseException) -> Outcome:
    """Network failures surface raw from the SDK. Only a failure to *connect* proves that Twilio
    never saw the request; anything after the request left (read timeout, reset) may have created
    the message."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Outcome.NOT_PROCESSED
    if isinstance(exc, requests.exceptions.ConnectionError) and _is_connect_failure(exc):
        return Outcome.NOT_PROCESSED
    return Outcome.AMBIGUOUS


def _is_connect_failure(exc: BaseException) -> bool:
    from urllib3.exceptions import NewConnectionError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (NewConnectionError, ConnectionRefusedError)):
            return True
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
            continue
        args = getattr(current, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        current = nested or current.__cause__ or current.__context__
    return False


def _twilio_message(exc: TwilioRestException) -> str:
    # The SDK prefixes Twilio's own message with its own words; keep Twilio's, as its docs word it.
    message = str(exc.msg or "")
    for prefix in ("Unable to create record: ", "Unable to fetch page: "):
        message = message.removeprefix(prefix)
    return message[:1000]


def _describe(exc: BaseException) -> str:
    # The class name and not str(exc): a requests error message can carry the full URL, and the
    # URL of a message resource contains the Account SID.
    return f"{type(exc).__module__}.{type(exc).__name__}"


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
