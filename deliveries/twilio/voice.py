"""Twilio's Voice API, as an escalation uses it: one outbound call that reads the alert out with
<Say> and takes "press 1 to acknowledge" with <Gather>, and the look-up after an ambiguous answer.

A voicemail greeting or an answering machine never presses 1, so only a person's keypress reaches
the <Gather> action with Digits=1: no answering-machine detection is needed, or trusted.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from twilio.base.exceptions import TwilioRestException

from deliveries import status as statuses
from deliveries.status import Status
from deliveries.twilio.client import (
    LookupOutcome,
    LookupResult,
    SendResult,
    http_client,
    ms_since,
    rest_client,
    rest_error_message,
)
from deliveries.twilio.errors import Outcome, classify_exception, classify_rest_error, describe

# How long a call rings before Twilio gives up (no-answer), and how long <Gather> waits for a key.
RING_SECONDS = 30
GATHER_SECONDS = 10
SAY_MAX_CHARS = 600  # a call reads the alert out; the full text is on the desk and in the SMS
CALL_STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]


NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}


def call_twiml(*, alert_text: str, gather_url: str, alerts: int = 1) -> str:
    """What the person hears (docs/recipients.md, "A phone call"). The alert is said twice inside the
    <Gather>, so a key pressed while it is read counts; no key means no acknowledgement. A call about
    several alerts (`alerts`, its text reading each one out) acknowledges them all with one key."""
    said = alert_text[:SAY_MAX_CHARS]
    if alerts > 1:
        prompt = f"Press 1 to acknowledge all {NUMBER_WORDS.get(alerts, str(alerts))}."
        inner = f"<Say>ext-twilio: {alerts} security alerts waiting. {escape(said)}</Say><Say>{prompt}</Say>"
    else:
        prompt = "Press 1 to acknowledge this alert."
        inner = f"<Say>ext-twilio security alert. {escape(said)}</Say><Say>{prompt}</Say>"
    gather = f'<Gather numDigits="1" timeout="{GATHER_SECONDS}" action={quoteattr(gather_url)} method="POST">'
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Response>{gather}{inner}<Say>{prompt}</Say></Gather>'
        "<Say>Not acknowledged. Goodbye.</Say></Response>"
    )


def approval_twiml(*, question: str, gather_url: str) -> str:
    """An approval's call: the question, then "press 1 to approve, 2 to deny", inside the <Gather>."""
    prompt = "Press 1 to approve, 2 to deny."
    inner = f"<Say>ext-twilio asks for your approval. {escape(question[:SAY_MAX_CHARS])}</Say><Say>{prompt}</Say>"
    gather = f'<Gather numDigits="1" timeout="{GATHER_SECONDS}" action={quoteattr(gather_url)} method="POST">'
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Response>{gather}{inner}<Say>{prompt}</Say></Gather>'
        "<Say>No answer recorded. Goodbye.</Say></Response>"
    )


def say_twiml(text: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Say>{escape(text)}</Say></Response>'


def gather_answer(acknowledged: bool) -> str:
    said = "Acknowledged. Thank you." if acknowledged else "Not acknowledged. Goodbye."
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Say>{said}</Say></Response>'


def place_call(
    *, account_sid: str, auth_token: str, to: str, from_: str, twiml: str, status_callback: str = ""
) -> SendResult:
    """POST one call. Never raises for an HTTP or network failure: it returns the outcome, with the
    same classes as a message (a 5xx or read timeout is ambiguous: the call may be ringing)."""
    params: dict[str, Any] = {"to": to, "from_": from_, "twiml": twiml, "timeout": RING_SECONDS}
    if status_callback:
        params.update(status_callback=status_callback, status_callback_event=CALL_STATUS_EVENTS)
    http = http_client()
    started = time.monotonic()
    try:
        call = rest_client(account_sid, auth_token).calls.create(**params)
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
        sid=call.sid or "",
        status=statuses.from_twilio(str(call.status or "")) or Status.QUEUED,
    )


def find_call(
    *, account_sid: str, auth_token: str, to: str, from_: str, since: datetime, proven: frozenset[str]
) -> LookupResult:
    """After an ambiguous answer: this step's call, if Twilio has it. To and From name a person, not a
    step: another alert's call to the same person matches them too. So a call is found only when its SID
    is `proven`, i.e. came in a status callback to this step's own URL (which carries our delivery id);
    a call that matches To and From without that proof is reported as a failed look-up, so it is looked
    for again later (by then its callback has usually come, and moved the delivery on by itself)."""
    http = http_client()
    started = time.monotonic()
    try:
        calls = rest_client(account_sid, auth_token).calls.list(to=to, from_=from_, limit=20, page_size=20)
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
    recent = [c for c in calls if c.date_created is None or c.date_created >= since - timedelta(seconds=30)]
    for call in recent:
        if call.sid in proven:
            return LookupResult(
                LookupOutcome.FOUND,
                ms_since(started),
                sid=call.sid or "",
                status=statuses.from_twilio(str(call.status or "")) or Status.QUEUED,
                http_status=200,
                twilio_request_id=http.last_request_id,
            )
    unproven = f"{len(recent)} call(s) to this number since the attempt, none proven this step's (no status "
    unproven += "callback from it yet); looked for again later"
    return LookupResult(
        LookupOutcome.FAILED if recent else LookupOutcome.NOT_FOUND,
        ms_since(started),
        http_status=200,
        twilio_message=unproven if recent else "",
        twilio_request_id=http.last_request_id,
    )
