"""SMS text rules: numbers, body normalisation, truncation, encoding and segment count.

Cost matters here: a single character outside GSM-7 (an emoji, a smart quote, a non-breaking
space) switches the whole message to UCS-2, which fits 70 characters per segment instead of 160,
so the same alert costs two to three times as much. Alerts are machine-made text, so
characters that only look typographic are replaced by their plain equivalents first.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import phonenumbers

MESSAGING_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
TRUNCATION_MARKER = " [truncated]"  # plain ASCII: the marker itself must not force UCS-2

# GSM 03.38 basic character set, and the extension table whose characters take two septets.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")
GSM7 = GSM7_BASIC | GSM7_EXTENDED

# Characters that force UCS-2 for no benefit in an alert, and their GSM-7 stand-ins.
_PLAIN_EQUIVALENTS = str.maketrans(
    {
        "\u00a0": " ",  # no-break space
        "\u2007": " ",  # figure space
        "\u202f": " ",  # narrow no-break space
        "\u2009": " ",  # thin space
        "\u200b": "",  # zero-width space
        "\ufeff": "",  # byte-order mark
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u2013": "-",  # en dash
        "\u2014": "-",  # em dash
        "\u2212": "-",  # minus sign
        "\u2026": "...",
        "\t": " ",
    }
)


class InvalidNumber(ValueError):
    """A number that is not E.164; the message says why, without guessing a country."""


# Remembered: parsing a number costs about 30 µs of CPU (0.1 µs remembered), and the same senders and
# on-call numbers come back call after call. A refused number raises and is not remembered.
@functools.lru_cache(maxsize=4096)
def normalize_number(value: str) -> str:
    """Return `value` as E.164 (`+` and up to 15 digits). Spaces, dashes and brackets are accepted
    because people paste numbers that way; a leading `+` and country code are required, because
    guessing a country for a security alert would text a stranger."""
    text = value.strip()
    if not text.startswith("+"):
        raise InvalidNumber("must be in E.164 form: '+' then the country code and number, e.g. +14155550100")
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        raise InvalidNumber("is not a phone number in E.164 form, e.g. +14155550100") from None
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidNumber("has the wrong number of digits for its country code")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_sender(value: str) -> str:
    """A sender is an E.164 number or a Messaging Service SID (`MG` + 32 hex)."""
    text = value.strip()
    if MESSAGING_SERVICE_SID.match(text):
        return text
    try:
        return normalize_number(text)
    except InvalidNumber as exc:
        raise InvalidNumber(f"{exc}, or a Messaging Service SID (MG followed by 32 hex digits)") from None


def parse_recipients(value: str, limit: int) -> list[str]:
    """Split a comma-separated `to` into distinct E.164 numbers, in the order given.

    The count is checked before any number is parsed (parsing costs ~0.2 ms each: a `to` of 40,000
    numbers would otherwise burn seconds of CPU only to be refused), and repeats are found with a set,
    so the work is linear in the length of `to` and bounded by `limit` parses."""
    if value.count(",") >= limit:  # cheap first look: only a long list needs the split below
        count = sum(1 for part in value.split(",") if part.strip())
        if count > limit:
            raise InvalidNumber(f"has {count} recipients; at most {limit} are allowed (SMS_MAX_RECIPIENTS)")
    parts = [part for part in (p.strip() for p in value.split(",")) if part]
    if not parts:
        raise InvalidNumber("is empty: give at least one number in E.164 form")
    numbers: dict[str, None] = {}  # ordered, with constant-time membership
    for part in parts:
        try:
            number = normalize_number(part)
        except InvalidNumber as exc:
            raise InvalidNumber(f"{_shown(part)} {exc}") from None
        numbers.setdefault(number, None)
    return list(numbers)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 32 else value[:29] + "...")


def ack_instruction(code: str) -> str:
    """The line appended to an alert text that can be acknowledged (docs/recipients.md, "An alert text")."""
    return f"\nReply {code} to acknowledge"


@dataclass(frozen=True)
class PreparedBody:
    text: str
    original_length: int
    truncated: bool
    encoding: str  # "gsm7" or "ucs2"
    segments: int


def prepare_body(raw: str, max_chars: int, suffix: str = "") -> PreparedBody:
    """Normalise, cap at `max_chars` with a visible marker, and work out encoding and segments.
    `suffix` (the acknowledgement instruction, GSM-7) is appended when sent: it takes room from the
    cap and counts toward the segments, but is not part of the returned text."""
    text = raw.translate(_PLAIN_EQUIVALENTS).strip()
    original_length = len(raw)
    room = max_chars - len(suffix)
    truncated = len(text) > room
    if truncated:
        text = text[: room - len(TRUNCATION_MARKER)].rstrip() + TRUNCATION_MARKER
    encoding, segments = encoding_and_segments(text + suffix)
    return PreparedBody(text, original_length, truncated, encoding, segments)


def encoding_and_segments(text: str) -> tuple[str, int]:
    # By the distinct characters, with set operations: every `run` call counts its text, and a test of
    # each character in Python took a tenth of the call's SMS preparation.
    used = set(text)
    if used <= GSM7:
        septets = len(text) + sum(text.count(ch) for ch in used & GSM7_EXTENDED)  # extension: two each
        return "gsm7", 1 if septets <= 160 else math.ceil(septets / 153)
    # UCS-2 counts UTF-16 code units: an emoji outside the BMP takes two.
    units = len(text.encode("utf-16-le")) // 2
    return "ucs2", 1 if units <= 70 else math.ceil(units / 67)
