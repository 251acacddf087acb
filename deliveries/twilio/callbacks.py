"""Twilio's webhooks: status callbacks (messages and calls) and inbound messages, parsed into typed
reports, and X-Twilio-Signature."""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from twilio.request_validator import RequestValidator

from deliveries import status as statuses
from deliveries.status import Status
from deliveries.twilio.errors import OPTED_OUT_CODE, meaning


@dataclass(frozen=True)
class StatusReport:
    message_sid: str
    twilio_status: str  # as Twilio said it: kept on the stored event
    status: Status | None  # ours; None for a Twilio status we do not track
    error_code: int | None

    @property
    def error_meaning(self) -> str:
        return meaning(self.error_code) if self.error_code is not None else ""

    @property
    def opted_out(self) -> bool:
        return self.error_code == OPTED_OUT_CODE


def parse_status_callback(params: dict[str, str]) -> StatusReport:
    """The fields we act on. Older callbacks carry SmsStatus instead of MessageStatus; a call's
    callbacks carry CallSid and CallStatus."""
    twilio_status = (params.get("MessageStatus") or params.get("SmsStatus") or params.get("CallStatus") or "")[:32]
    return StatusReport(
        message_sid=(params.get("MessageSid") or params.get("CallSid") or "")[:34],
        twilio_status=twilio_status,
        status=statuses.from_twilio(twilio_status),
        error_code=_code(params.get("ErrorCode")),
    )


def _code(value: str | None) -> int | None:
    # Twilio's codes have five digits; anything that is not a small number is not a code we know.
    # isascii: str.isdigit() is also true for '²' and other scripts' digits, which int() refuses.
    if value and value.isascii() and value.isdigit() and len(value) <= 9:
        return int(value)
    return None


def signature_valid(*, auth_token: str, url: str, params: dict[str, str], signature: str) -> bool:
    """X-Twilio-Signature check, over the URL exactly as Twilio called it."""
    return bool(signature) and RequestValidator(auth_token).validate(url, params, signature)


# --- inbound messages and keypresses ------------------------------------------------------------------

# Twilio's own opt-out keywords (and what its Advanced Opt-Out reports in OptOutType).
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})


@dataclass(frozen=True)
class InboundReport:
    message_sid: str
    from_number: str
    to_number: str
    body: str
    keyword: str  # "stop", "start", "help" or "" (anything else)


def parse_inbound_message(params: dict[str, str]) -> InboundReport:
    """An incoming SMS. The keyword is the whole message, trimmed, case-insensitive, as Twilio
    matches it; Twilio's OptOutType (STOP, START, HELP), when present, decides."""
    body = params.get("Body", "")
    word = body.strip().rstrip(".!").upper()
    opt_out_type = params.get("OptOutType", "").strip().upper()
    if opt_out_type in ("STOP", "START", "HELP"):
        keyword = opt_out_type.lower()
    elif word in STOP_WORDS:
        keyword = "stop"
    elif word in START_WORDS:
        keyword = "start"
    elif word in HELP_WORDS:
        keyword = "help"
    else:
        keyword = ""
    return InboundReport(
        message_sid=(params.get("MessageSid") or params.get("SmsSid") or "")[:34],
        from_number=params.get("From", "")[:34],
        to_number=params.get("To", "")[:34],
        body=body[:1600],
        keyword=keyword,
    )


def messaging_twiml(reply: str) -> str:
    """The answer to an inbound message: a reply text, or nothing (an empty <Response/>)."""
    if not reply:
        return '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{escape(reply)}</Message></Response>'
