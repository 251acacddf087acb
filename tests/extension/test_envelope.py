from __future__ import annotations

import gzip

import pytest

from extension.envelope import EnvelopeError, decompress, parse, sign, signature_matches

VECTOR_BODY = b'{"version":20221218,"idempotency_key":"k","heartbeat":{}}'
VECTOR_SIG = "95588b098c61ed5c7b10daa468767d6bc76f66c8362162c0a841f74ebcff070d"


def test_it_signs_the_reference_test_vector() -> None:
    assert sign("test-secret", VECTOR_BODY) == VECTOR_SIG


def test_it_accepts_the_vector_signature_in_upper_case_and_rejects_one_changed_byte() -> None:
    assert signature_matches("test-secret", VECTOR_BODY, VECTOR_SIG.upper())
    assert not signature_matches("test-secret", VECTOR_BODY.replace(b'"k"', b'"j"'), VECTOR_SIG)


def test_it_stops_inflating_a_gzip_bomb_at_the_cap() -> None:
    bomb = gzip.compress(b"0" * 50_000_000)
    with pytest.raises(EnvelopeError) as err:
        decompress(bomb, "gzip", 1_000_000)
    assert err.value.status == 413
    assert "larger than 1000000 bytes" in err.value.message


def test_it_refuses_a_body_that_says_gzip_but_is_not() -> None:
    with pytest.raises(EnvelopeError, match="not valid gzip"):
        decompress(b'{"heartbeat":{}}', "gzip", 1000)


def test_it_refuses_truncated_gzip() -> None:
    with pytest.raises(EnvelopeError, match="truncated"):
        decompress(gzip.compress(b"x" * 1000)[:-12], "gzip", 100_000)


def test_it_reads_a_plain_body_unchanged() -> None:
    assert decompress(VECTOR_BODY, "", 1000) == VECTOR_BODY


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"[1,2]", "must be a JSON object"),
        (b'{"version":20221218}', "no message type"),
        (b'{"version":20221218,"heartbeat":{},"schema_request":{}}', "more than one message type"),
        (b'{"version":20221218,"request":"run"}', "request must be a JSON object"),
        (b'{"version":20221218,"idempotency_key":5,"heartbeat":{}}', "idempotency_key must be a string"),
    ],
)
def test_it_says_why_an_envelope_is_refused(body: bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError, match=reason):
        parse(body)


def test_it_ignores_unknown_extra_keys() -> None:
    kind, block, _ = parse(b'{"version":20221218,"acl":{"x":1},"heartbeat":{},"future_block":null}')
    assert (kind, block) == ("heartbeat", {})
