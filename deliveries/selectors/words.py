"""The desk's words for what the records hold in codes: Twilio's error codes, network failures
recorded as Python class names, holds, waits and ages. Pure functions: no queries."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from deliveries.models import Delivery
from deliveries.twilio.errors import ERROR_MEANINGS, meaning

# Failures recorded by class name (deliveries.twilio.errors.describe keeps the URL, which holds the
# Account SID, out of the record). What each means for the message.
_NETWORK_WORDS = {
    "ProtocolError": "the connection to Twilio broke after the request was sent: Twilio may have the message",
    "ReadTimeoutError": "Twilio did not answer in time: it may have the message",
    "TimeoutError": "Twilio did not answer in time: it may have the message",
    "ConnectTimeoutError": "could not connect to Twilio (timed out): nothing was sent",
    "NewConnectionError": "could not connect to Twilio: nothing was sent",
    "NameResolutionError": "could not resolve Twilio's address: nothing was sent",
    "ConnectionRefusedError": "Twilio refused the connection: nothing was sent",
    "SSLError": "the TLS connection to Twilio failed",
    "ProxyError": "the proxy to Twilio failed",
    "MaxRetryError": "could not reach Twilio",
}
_CLASS_NAME = re.compile(r"^(?:[a-z_][\w]*\.)+([A-Z]\w*)$")
# The HTTP reason phrases Twilio's 5xx answers are stored with.
_HTTP_WORDS = {"Internal Server Error": "Twilio answered 500 (internal error): it may have the message"}


def code_meaning(code: int | None) -> str:
    """What a Twilio error code means, in words ("" for no code)."""
    return meaning(code) if code else ""


def known_codes() -> dict[int, str]:
    return dict(ERROR_MEANINGS)


def error_in_words(code: int | None, message: str) -> str:
    """A delivery's or attempt's error as the desk shows it: the code and its meaning, or the
    network failure in words, never a Python class name."""
    if code:
        return f"{code} {meaning(code)}"
    message = message.strip()
    match = _CLASS_NAME.match(message)
    if match:
        return _NETWORK_WORDS.get(match.group(1), f"a network error talking to Twilio ({match.group(1)})")
    return _HTTP_WORDS.get(message, message)


def hold_in_words(delivery: Delivery) -> str:
    return delivery.get_hold_display() if delivery.hold else ""


def duration(value: timedelta | None) -> str:
    """11 s, 4 min 32 s, 2 h 5 min, 3 d 4 h."""
    if value is None:
        return ""
    seconds = max(0, int(value.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def countdown(value: timedelta) -> str:
    """4:32 (minutes and seconds), for "next in 4:32"."""
    seconds = max(0, int(value.total_seconds()))
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}:{seconds:02d}"


def ago(moment: datetime, now: datetime) -> str:
    """just now, 4 min ago, 3 h ago, 2 d ago."""
    seconds = int((now - moment).total_seconds())
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def plural(n: int, one: str, many: str) -> str:
    """'1 delivery', '2 deliveries'."""
    return f"{n} {one if n == 1 else many}"
