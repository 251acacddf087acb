"""What the desk's search boxes understand: a phone number in any format, a Twilio SID, an id, and on
deliveries also the alert's text (a host, detection words), its investigation id, its rule (ident) and
an acknowledgement code. Each term maps onto an index: equality on a B-tree for numbers, SIDs and ids;
a trigram index (PostgreSQL's pg_trgm, migration 0015) for the text, so that "fs-01" or "ransom" are
found as substrings among a million rows. SQLite, with no such index, does the same substring match
by scanning."""

from __future__ import annotations

import contextlib
import re
import uuid

import phonenumbers
from django.db.models import CharField, F, Func, Q, QuerySet
from phonenumbers import CountryCodeSource

from deliveries.models import Delivery
from deliveries.sms import InvalidNumber, normalize_number

TWILIO_MESSAGE_SID = re.compile(r"^(SM|MM|CA)[0-9a-fA-F]{32}$")
_NUMBER_PUNCTUATION = re.compile(r"[\s().\-/]")
# Trigrams need three characters; a shorter term would be a scan of every row.
MIN_TEXT_TERM = 3


def as_e164(term: str) -> str | None:
    """The E.164 form of what an operator typed as a phone number, or None if it is not one.

    People paste numbers as `+1 (415) 555-0100`, `0014155550100` or `14155550100`. Without a `+`
    we read the digits as country code and number (what an international format without its `+`
    is); national forms are national_candidates' job.
    """
    text = term.strip().removeprefix("tel:")
    compact = _NUMBER_PUNCTUATION.sub("", text)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    elif not compact.startswith("+"):
        compact = "+" + compact
    if not compact[1:].isdigit() or len(compact) < 8:
        return None
    try:
        return normalize_number(compact)
    except InvalidNumber:
        return None


def national_candidates(term: str) -> list[str]:
    """A number typed without its country code (`(415) 555-0141`, `415-555-0141`, `020 7946 0018`):
    the E.164 numbers it could be the national form of, in any country (a few dozen equality probes
    of a number index). An operator searching wants every match; the intake still never guesses a
    country for a recipient."""
    text = term.strip()
    compact = _NUMBER_PUNCTUATION.sub("", text)
    if text.startswith("+") or compact.startswith("00") or not compact.isdigit() or not 6 <= len(compact) <= 15:
        return []
    found = set()
    for region in phonenumbers.SUPPORTED_REGIONS:
        try:
            parsed = phonenumbers.parse(compact, region, keep_raw_input=True)
        except phonenumbers.NumberParseException:
            continue
        if parsed.country_code_source == CountryCodeSource.FROM_DEFAULT_COUNTRY and phonenumbers.is_possible_number(
            parsed
        ):
            found.add(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
    return sorted(found)


def number_q(field: str, term: str) -> Q | None:
    """`field` equal to the number `term` stands for, in any format; None if it is no number."""
    numbers = set(national_candidates(term))
    number = as_e164(term)
    if number:
        numbers.add(number)
    return Q(**{f"{field}__in": sorted(numbers)}) if numbers else None


class SearchText(Func):
    """UPPER(body || ' ' || inv_id || ' ' || ident || ' ' || ack_code): the text a delivery is found
    by. Migration 0015 indexes exactly this expression (PostgreSQL matches an index by its expression)."""

    function = "UPPER"
    template = "UPPER(%(expressions)s)"
    arg_joiner = " || ' ' || "
    output_field = CharField()

    def __init__(self) -> None:
        super().__init__(F("body"), F("inv_id"), F("ident"), F("ack_code"))


def delivery_search(queryset: QuerySet[Delivery], term: str) -> QuerySet[Delivery]:
    """The deliveries a search box entry finds: the alert's text, investigation id, rule or code as a
    substring; and by equality a delivery id, an idempotency key, a Twilio SID or a number."""
    term = term.strip()
    if not term:
        return queryset
    q = Q(idempotency_key=term)
    with contextlib.suppress(ValueError):  # not a delivery id
        q |= Q(id=uuid.UUID(term))
    if TWILIO_MESSAGE_SID.match(term):
        q |= Q(twilio_sid=term)
    number = number_q("to_number", term)
    if number is not None:
        q |= number
    if len(term) >= MIN_TEXT_TERM:
        q |= Q(search_text__contains=term.upper())
        queryset = queryset.alias(search_text=SearchText())
    return queryset.filter(q)
