"""The only module that calls Twilio's API.

It turns every way a POST to Twilio can end into a `SendResult` whose `outcome` carries the retry
policy (see errors.classify_*). Retry decisions are made by deliveries.services, never here and
never by the SDK: the async SDK client re-POSTs after a 500, which can text a person twice.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlencode

import certifi
import urllib3
from django.conf import settings
from requests.utils import get_environ_proxies
from twilio.base.exceptions import TwilioRestException
from twilio.http import HttpClient
from twilio.http.response import Response
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


class _PooledClient(HttpClient):
    """The SDK's HTTP client on urllib3, without requests.

    The SDK builds the request and reads the answer; this only carries it. requests added about 0.5 ms
    of CPU per POST on top of urllib3 (preparing, merging session settings, hooks), half the SDK's whole
    cost (measured, issue 9). It also remembers the last answer's `Twilio-Request-Id` (the id Twilio
    support asks for), which the SDK drops when it raises TwilioRestException.

    Nothing is retried and no redirect is followed here: a second POST could text a person twice, so
    deliveries.services decides (errors.classify_exception says which failures are safe to retry)."""

    last_request_id: str = ""

    def __init__(self, timeout: float) -> None:
        super().__init__(logging.getLogger("twilio.http_client"), False, timeout)

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        self.last_request_id = ""
        headers = dict(headers or {})
        if auth:
            headers["Authorization"] = urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}")["authorization"]
        body: str | None = None
        if headers.get("Content-Type") in ("application/json", "application/scim+json"):
            body = json.dumps(data)
        elif data:
            body = _form(data)
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if params:
            uri += ("&" if "?" in uri else "?") + _form(params)
        seconds = timeout or self.timeout
        answer = _pool().request(
            method.upper(),
            uri,
            body=body,
            headers=headers,
            timeout=urllib3.Timeout(connect=seconds, read=seconds),
            retries=False,
            redirect=allow_redirects,
        )
        self.last_request_id = answer.headers.get("Twilio-Request-Id", "")
        return Response(answer.status, answer.data.decode("utf-8", "replace"), answer.headers)


def _form(values: dict[str, object]) -> str:
    """Form-encode as requests did, so Twilio receives the same bytes: a list repeats its key, None is left out."""
    pairs = [
        (key, value)
        for key, listed in values.items()
        for value in (listed if isinstance(listed, (list, tuple)) else [listed])
        if value is not None
    ]
    return urlencode(pairs)


_pools: dict[int, urllib3.PoolManager] = {}
_pools_lock = threading.Lock()


def _pool() -> urllib3.PoolManager:
    """One connection pool per process, shared by its threads (urllib3's pools are thread-safe). A pool
    inherited across a fork would share its sockets with the parent, hence one per pid."""
    pool = _pools.get(os.getpid())
    if pool is None:
        with _pools_lock:
            pool = _pools.get(os.getpid()) or _new_pool()
            _pools.clear()
            _pools[os.getpid()] = pool
    return pool


def _new_pool() -> urllib3.PoolManager:
    """The proxy and CA bundle that requests would have used for Twilio's address, read from the
    environment once (HTTPS_PROXY / HTTP_PROXY / NO_PROXY, REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE)."""
    base = settings.TWILIO_API_BASE_URL or "https://api.twilio.com"
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    where = {"ca_cert_dir": bundle} if os.path.isdir(bundle) else {"ca_certs": bundle}
    # Room to keep a connection alive for every thread of a worker, however many (CELERY_CONCURRENCY): a
    # thread that found the pool full would open one of its own and close it after use. Connections are
    # only opened when a thread needs one, so the room costs nothing.
    options: dict[str, Any] = {"maxsize": 256, "cert_reqs": "CERT_REQUIRED", **where}
    proxy = get_environ_proxies(base).get(urllib3.util.parse_url(base).scheme or "https")
    if not proxy:
        return urllib3.PoolManager(**options)
    parsed = urllib3.util.parse_url(proxy)
    if parsed.auth:
        options["proxy_headers"] = urllib3.make_headers(proxy_basic_auth=unquote(parsed.auth))
    return urllib3.ProxyManager(parsed._replace(auth=None).url, **options)


_local = threading.local()


def http_client() -> _PooledClient:
    """This thread's client: its own `last_request_id`, the process's pool. Credentials travel with each
    request, so one client serves every Twilio account."""
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = _PooledClient(timeout=settings.TWILIO_TIMEOUT_SECONDS)
    client.timeout = settings.TWILIO_TIMEOUT_SECONDS  # the SDK's default is no timeout at all
    return client


def rest_client(account_sid: str, auth_token: str) -> Client:
    client = Client(account_sid, auth_token, http_client=http_client())
    if settings.TWILIO_API_BASE_URL:
        client.api.base_url = settings.TWILIO_API_BASE_URL
    return client


def warm_up() -> None:
    """Load the SDK's message and call resources now, at a worker's start (no request is made): the SDK
    imports them on first use, and the first tasks of a burst waited for that import (33 ms, while every
    other thread queued on the import lock)."""
    account = rest_client("AC" + "0" * 32, "-").api.v2010.account
    account.messages, account.calls  # noqa: B018 - the properties import the resources


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
