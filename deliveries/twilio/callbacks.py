"""Twilio's status callbacks: the form Twilio posts, parsed into a typed report, and its signature."""

from __future__ import annotations

from dataclasses import dataclass

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
    """The fields we act on. Older callbacks carry SmsStatus instead of MessageStatus."""
    twilio_status = (params.get("MessageStatus") or params.get("SmsStatus") or "")[:32]
    return StatusReport(
        message_sid=params.get("MessageSid", "")[:34],
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
