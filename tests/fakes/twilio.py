"""A fake of Twilio's Messages API that behaves as ../shared/reference/twilio-messaging.md describes.

It records the exact form of every POST, keeps the messages it created (what "exists at Twilio"),
answers GET Messages.json with filters, and can be told how to answer the next POSTs:

    fake.plan("429")            # 429 / 20429: not processed, nothing created
    fake.plan("error", status=400, code=21211, message="Invalid 'To' Phone Number")
    fake.plan("500")            # creates nothing, answers 500
    fake.plan("create_then_500")# creates the message, then answers 500 (the ambiguous case)
    fake.plan("create_then_reset") / fake.plan("reset")  # connection dropped after/without creating
    fake.plan("slow", seconds=3)   # creates, answers 201 after a delay
    fake.plan("hang", seconds=30)  # creates, answers after the client gave up (read timeout)
    fake.lookup_failures = 2    # the next two GET Messages.json answer 503

Calls (Calls.json) are created, planned and listed the same way; `fake.calls` holds them with the
TwiML they were given. What Twilio sends back to the service is built here too, signed exactly as
Twilio signs it (HMAC-SHA1 over the URL and the sorted form fields, keyed by the Auth Token):

    fake.inbound_message(url, token, From=..., To=..., Body="STOP")   # an incoming SMS webhook
    fake.message_status(message, "delivered", token)                  # a message's status callback
    fake.call_status(call, "completed", token)                        # a call's status callback
    fake.gather(call, "1", token)                                     # the <Gather> action: a keypress
Each returns a `Webhook` (path, form, signature) for the test to post.
"""

from __future__ import annotations

import base64
import random
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twilio.request_validator import RequestValidator

from tests.fakes.base import FakeServer, QuietHandler

RESOURCES = ("Messages.json", "Calls.json")


@dataclass(frozen=True)
class Webhook:
    """A request Twilio would make to the service: where, what, and its X-Twilio-Signature."""

    url: str
    form: dict[str, str]
    signature: str

    @property
    def path(self) -> str:
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")


def signed(url: str, form: dict[str, str], token: str) -> Webhook:
    return Webhook(url, form, RequestValidator(token).compute_signature(url, form))


@dataclass
class Plan:
    kind: str
    status: int = 0
    code: int = 0
    message: str = ""
    seconds: float = 0.0


@dataclass
class Received:
    account_sid: str
    form: dict[str, str]
    headers: dict[str, str]
    at: float = field(default_factory=time.time)


class _Handler(QuietHandler):
    fake: FakeTwilio

    def _account(self) -> str | None:
        parts = urlsplit(self.path).path.strip("/").split("/")
        # /2010-04-01/Accounts/{sid}/Messages.json (or Calls.json)
        if len(parts) == 4 and parts[0] == "2010-04-01" and parts[1] == "Accounts" and parts[3] in RESOURCES:
            return parts[2]
        return None

    def _is_call(self) -> bool:
        return urlsplit(self.path).path.endswith("/Calls.json")

    def _authorised(self, sid: str) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user == sid and self.fake.accounts.get(sid) == password

    def _error(self, status: int, code: int, message: str) -> None:
        self.send_json(
            status,
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
            {"Twilio-Request-Id": self.fake.request_id()},
        )

    def do_GET(self) -> None:
        sid = self._account()
        if sid is None or not self._authorised(sid):
            return self._error(401 if sid else 404, 20003 if sid else 20404, "Authenticate")
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        with self.fake.lock:
            self.fake.lookups.append(query)
            if self.fake.lookup_failures:
                self.fake.lookup_failures -= 1
                fail = True
            else:
                fail = False
        if fail:
            return self._error(503, 20500, "Service Unavailable")
        with self.fake.lock:
            if self._is_call():
                calls = [
                    c
                    for c in self.fake.calls
                    if c["account_sid"] == sid
                    and ("To" not in query or c["to"] == query["To"])
                    and ("From" not in query or c["from"] == query["From"])
                ]
                page = {"calls": calls, "page": 0, "page_size": 20, "next_page_uri": None, "uri": self.path}
                return self.send_json(200, page, {"Twilio-Request-Id": self.fake.request_id()})
            found = [
                m
                for m in self.fake.messages
                if m["account_sid"] == sid
                and ("To" not in query or m["to"] == query["To"])
                and ("From" not in query or m["from"] == query["From"])
            ]
        self.send_json(
            200,
            {"messages": found, "page": 0, "page_size": 50, "next_page_uri": None, "uri": self.path},
            {"Twilio-Request-Id": self.fake.request_id()},
        )

    def do_POST(self) -> None:
        sid = self._account()
        raw = self.read_body()
        form = {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
        if sid is None:
            return self._error(404, 20404, "The requested resource was not found")
        with self.fake.lock:
            self.fake.received.append(Received(sid, form, dict(self.headers.items())))
            plan = self.fake.plans.pop(0) if self.fake.plans else Plan("ok")
            every, kind = self.fake.every_nth
            if plan.kind == "ok" and every and len(self.fake.received) % every == 0:
                plan = Plan(kind)
            if plan.kind == "ok" and form.get("To") in self.fake.refuse:
                code = self.fake.refuse[form["To"]]
                plan = Plan("error", status=400, code=code, message=f"Twilio error {code}")
            if plan.kind == "ok" and self.fake.chaos:
                plan = self.fake.chaos_plan()
        if not self._authorised(sid):
            return self._error(401, 20003, "Authenticate")
        if plan.kind == "429":
            return self._error(429, 20429, "Too Many Requests")
        if plan.kind == "error":
            return self._error(plan.status, plan.code, plan.message)
        if plan.kind == "500":
            return self._error(500, 20500, "Internal Server Error")
        if plan.kind == "reset":
            return self._drop()
        message = self.fake.create_call(sid, form) if self._is_call() else self.fake.create(sid, form)
        if plan.kind == "create_then_500":
            return self._error(500, 20500, "Internal Server Error")
        if plan.kind == "create_then_reset":
            return self._drop()
        if plan.kind in ("slow", "hang"):
            time.sleep(plan.seconds)
        self.send_json(201, message, {"Twilio-Request-Id": self.fake.request_id()})

    def _drop(self) -> None:
        self.close_connection = True
        self.connection.shutdown(2)


class FakeTwilio(FakeServer):
    handler_class = _Handler

    def __init__(self) -> None:
        super().__init__()
        self.accounts: dict[str, str] = {}
        self.received: list[Received] = []
        self.messages: list[dict[str, Any]] = []
        self.status_callbacks: dict[str, str] = {}  # message SID -> the StatusCallback it was created with
        self.calls: list[dict[str, Any]] = []
        self.plans: list[Plan] = []
        self.lookups: list[dict[str, str]] = []
        self.lookup_failures = 0
        self.every_nth: tuple[int, str] = (0, "")  # e.g. (3, "500"): every third POST answers 500
        self.refuse: dict[str, int] = {}  # To number -> Twilio error code it always gets
        self.chaos: dict[str, float] = {}  # plan kind -> probability, for load runs
        self.random = random.Random(20261126)

    def chaos_plan(self) -> Plan:
        roll = self.random.random()
        for kind, probability in self.chaos.items():
            if roll < probability:
                if kind == "21211":
                    return Plan("error", status=400, code=21211, message="Invalid 'To' Phone Number")
                return Plan(kind)
            roll -= probability
        return Plan("ok")

    def add_account(self, sid: str, token: str) -> None:
        with self.lock:
            self.accounts[sid] = token

    def plan(self, kind: str, **kwargs: Any) -> None:
        with self.lock:
            self.plans.append(Plan(kind, **kwargs))

    def request_id(self) -> str:
        return "RQ" + secrets.token_hex(16)

    def create(self, account_sid: str, form: dict[str, str]) -> dict[str, Any]:
        now = datetime.now(UTC)
        service = form.get("MessagingServiceSid")
        sid = "SM" + secrets.token_hex(16)
        message = {
            "sid": sid,
            "account_sid": account_sid,
            "to": form.get("To"),
            "from": None if service else form.get("From"),
            "messaging_service_sid": service,
            "body": form.get("Body"),
            "status": "accepted" if service else "queued",
            "num_segments": "1",
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "price": None,
            "date_created": format_datetime(now),
            "date_sent": None,
            "date_updated": format_datetime(now),
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{account_sid}/Messages.json",
        }
        with self.lock:
            self.messages.append(message)
            self.status_callbacks[sid] = form.get("StatusCallback", "")
        return message

    def posts(self) -> list[dict[str, str]]:
        with self.lock:
            return [r.form for r in self.received]

    def create_call(self, account_sid: str, form: dict[str, str]) -> dict[str, Any]:
        now = format_datetime(datetime.now(UTC))
        call = {
            "sid": "CA" + secrets.token_hex(16),
            "account_sid": account_sid,
            "to": form.get("To"),
            "from": form.get("From"),
            "status": "queued",
            "direction": "outbound-api",
            "date_created": now,
            "date_updated": now,
            "start_time": None,
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{account_sid}/Calls.json",
            # Not part of Twilio's answer: kept so tests can play the call.
            "twiml": form.get("Twiml", ""),
            "status_callback": form.get("StatusCallback", ""),
        }
        with self.lock:
            self.calls.append(call)
        return call

    def call_posts(self) -> list[dict[str, str]]:
        with self.lock:
            return [r.form for r in self.received if "Twiml" in r.form]

    def message_posts(self) -> list[dict[str, str]]:
        with self.lock:
            return [r.form for r in self.received if "Twiml" not in r.form]

    # --- what Twilio sends to the service -------------------------------------------------------------

    def inbound_message(self, url: str, token: str, **fields: str) -> Webhook:
        """An incoming SMS as Twilio posts it to a number's webhook (fields as Twilio names them): from
        the account whose Auth Token signs it."""
        with self.lock:
            account = next((sid for sid, known in self.accounts.items() if known == token), "")
        form = {
            "MessageSid": "SM" + secrets.token_hex(16),
            "SmsSid": "",
            "AccountSid": account,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsStatus": "received",
            "ApiVersion": "2010-04-01",
            **fields,
        }
        form["SmsSid"] = form["MessageSid"]
        return signed(url, form, token)

    def message_status(self, message: dict[str, Any], status: str, token: str, url: str = "") -> Webhook:
        """A message's status callback (sent, delivered, ...), to the StatusCallback it was created with
        (or `url`)."""
        with self.lock:
            url = url or self.status_callbacks.get(message["sid"], "")
        form = {
            "MessageSid": message["sid"],
            "SmsSid": message["sid"],
            "AccountSid": message["account_sid"],
            "From": message["from"] or "",
            "To": message["to"],
            "MessageStatus": status,
            "SmsStatus": status,
            "ApiVersion": "2010-04-01",
        }
        return signed(url, form, token)

    def call_status(self, call: dict[str, Any], status: str, token: str, **extra: str) -> Webhook:
        """A call's status callback, to the StatusCallback it was created with."""
        form = {
            "CallSid": call["sid"],
            "AccountSid": call["account_sid"],
            "From": call["from"],
            "To": call["to"],
            "CallStatus": status,
            "Direction": "outbound-api",
            "ApiVersion": "2010-04-01",
            **extra,
        }
        return signed(call["status_callback"], form, token)

    def gather(self, call: dict[str, Any], digits: str, token: str) -> Webhook:
        """The <Gather> action: what Twilio posts after the person pressed `digits`."""
        match = re.search(r'<Gather[^>]*action="([^"]+)"', call["twiml"])
        assert match, f"the call's TwiML has no <Gather action>: {call['twiml']}"
        form = {
            "CallSid": call["sid"],
            "AccountSid": call["account_sid"],
            "From": call["from"],
            "To": call["to"],
            "CallStatus": "in-progress",
            "Digits": digits,
            "FinishedOnKey": "",
            "ApiVersion": "2010-04-01",
        }
        return signed(match.group(1).replace("&amp;", "&"), form, token)
