"""Twilio's error codes, what they mean to an operator, and the retry class of every way a call to
Twilio can end. Pure data and functions: no SDK, no network."""

from __future__ import annotations

import enum

from urllib3.exceptions import ConnectTimeoutError

# Twilio codes that mean "nothing was created, try again later" although the HTTP status is 4xx.
NOT_PROCESSED_CODES = frozenset({20429, 21611})
OPTED_OUT_CODE = 21610
BAD_CREDENTIALS_CODE = 20003

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


def meaning(code: int) -> str:
    return ERROR_MEANINGS.get(code, f"Twilio error {code}")


class Outcome(enum.StrEnum):
    """How one POST to Twilio ended, as a retry policy. The values are Attempt.Outcome's."""

    ACCEPTED = "accepted"
    NOT_PROCESSED = "not_processed"  # no message exists: safe to retry
    PERMANENT = "permanent"  # retrying cannot help
    AMBIGUOUS = "ambiguous"  # the message may exist at Twilio: never blindly re-POST


def classify_rest_error(status: int | None, code: int | None) -> Outcome:
    """Status first (Twilio warns that codes evolve), codes only for the special cases."""
    if status == 429 or code in NOT_PROCESSED_CODES:
        return Outcome.NOT_PROCESSED
    if status is None or status >= 500:
        return Outcome.AMBIGUOUS
    return Outcome.PERMANENT


def classify_exception(exc: BaseException) -> Outcome:
    """Network failures surface raw from the HTTP client (urllib3, with retries off). Only a failure to
    *connect* (refused, unresolvable, timed out while connecting, also to a proxy) proves that Twilio
    never saw the request; anything after the request left (read timeout, reset) may have created the
    message."""
    return Outcome.NOT_PROCESSED if _is_connect_failure(exc) else Outcome.AMBIGUOUS


def _is_connect_failure(exc: BaseException) -> bool:
    # urllib3's NewConnectionError (and NameResolutionError) are ConnectTimeoutErrors; a proxy's
    # ProxyError carries the connect failure among its arguments.
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ConnectTimeoutError, ConnectionRefusedError)):
            return True
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
            continue
        args = getattr(current, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        current = nested or current.__cause__ or current.__context__
    return False


def describe(exc: BaseException) -> str:
    # The class name and not str(exc): an HTTP client's error message can carry the full URL, and the
    # URL of a message resource contains the Account SID.
    return f"{type(exc).__module__}.{type(exc).__name__}"
