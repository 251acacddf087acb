from __future__ import annotations

from typing import Any

import pytest

from deliveries.sms import (
    InvalidNumber,
    encoding_and_segments,
    normalize_number,
    normalize_sender,
    parse_recipients,
    prepare_body,
)


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+14155550100", "+14155550100"),
        ("+1 (415) 555-0100", "+14155550100"),
        (" +44 20 7946 0018 ", "+442079460018"),
        ("+10123456789", "+10123456789"),
    ],
)
def test_it_normalises_numbers_to_e164(raw: str, e164: str) -> None:
    assert normalize_number(raw) == e164


@pytest.mark.parametrize("raw", ["4155550100", "+", "+1415", "+1 415 555 0100 999 999", "tel:+14155550100", ""])
def test_it_refuses_numbers_that_are_not_e164(raw: str) -> None:
    with pytest.raises(InvalidNumber):
        normalize_number(raw)


def test_a_sender_may_be_a_messaging_service_sid() -> None:
    sid = "MG" + "0f" * 16
    assert normalize_sender(sid) == sid
    with pytest.raises(InvalidNumber, match="or a Messaging Service SID"):
        normalize_sender("MG123")


def test_it_caps_the_number_of_recipients() -> None:
    with pytest.raises(InvalidNumber, match=r"has 3 recipients; at most 2 are allowed \(SMS_MAX_RECIPIENTS\)"):
        parse_recipients("+15005550001,+15005550002,+15005550003", limit=2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 160, ("gsm7", 1)),
        ("a" * 161, ("gsm7", 2)),
        ("a" * 306, ("gsm7", 2)),
        ("a" * 307, ("gsm7", 3)),
        ("[" * 80, ("gsm7", 1)),  # extension characters take two septets each
        ("[" * 81, ("gsm7", 2)),
        ("{" + "a" * 158, ("gsm7", 1)),  # 160 septets, extension and basic characters mixed
        ("{" + "a" * 159, ("gsm7", 2)),
        ("a" * 150 + "[]" * 5, ("gsm7", 2)),  # 170 septets
        ("é" * 160, ("gsm7", 1)),  # é is in the GSM-7 basic set
        ("a" * 69 + "€", ("gsm7", 1)),
        ("a" * 69 + "ł", ("ucs2", 1)),
        ("a" * 70 + "ł", ("ucs2", 2)),
        ("\U0001f6a8" * 35, ("ucs2", 1)),  # an emoji outside the BMP takes two UTF-16 units
        ("\U0001f6a8" * 36, ("ucs2", 2)),
    ],
)
def test_it_counts_encoding_and_segments(text: str, expected: tuple[str, int]) -> None:
    assert encoding_and_segments(text) == expected


def test_a_non_breaking_space_no_longer_doubles_the_cost() -> None:
    raw = "Alert:\u00a0" + "x" * 150
    assert encoding_and_segments(raw) == ("ucs2", 3)
    prepared = prepare_body(raw, 1600)
    assert (prepared.encoding, prepared.segments, prepared.truncated) == ("gsm7", 1, False)


def test_truncation_keeps_the_cap_and_the_original_length() -> None:
    prepared = prepare_body("y" * 2000, 1600)
    assert len(prepared.text) == 1600 and prepared.text.endswith(" [truncated]")
    assert (prepared.original_length, prepared.truncated, prepared.segments) == (2000, True, 11)


def test_a_number_seen_before_is_not_parsed_again_and_a_refused_one_is_never_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import phonenumbers

    parsed = []
    real_parse = phonenumbers.parse

    def counted(*args: Any) -> Any:
        parsed.append(args[0])
        return real_parse(*args)

    monkeypatch.setattr(phonenumbers, "parse", counted)

    assert normalize_number("+1 415 555 0177") == normalize_number("+1 415 555 0177") == "+14155550177"
    for _ in range(2):
        with pytest.raises(InvalidNumber, match="wrong number of digits"):
            normalize_number("+1 415 555 01")
    assert parsed == ["+1 415 555 0177", "+1 415 555 01", "+1 415 555 01"]
