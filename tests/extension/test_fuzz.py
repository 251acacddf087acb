"""Property-based fuzzing of the intake: thousands of generated envelopes, mutated real envelopes,
raw bytes, broken gzip and oversized bodies, all signed. Whatever arrives: never an unhandled error,
never a traceback, never a send for a refused call.

FUZZ_EXAMPLES sets the examples per test (600 in `make test`; `make fuzz` runs 10,000 and more)."""

from __future__ import annotations

import gzip
import json
import logging
import os
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from extension.envelope import MESSAGE_TYPES
from tests.conftest import Intake, Tenant
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "600"))
FUZZ = hsettings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
KNOWN_STATUSES = {200, 400, 401, 413}

# Text with what broke the intake before: NULs, lone surrogates, non-ASCII digits, dots.
hostile_text = st.text(max_size=40) | st.sampled_from(
    ["\x00", "k\x00", "\ud800", "x\udfff", "..", ".", "hive://secret/x/../..", "\u0663\u0660", "é" * 300, "k" * 300]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
run_data = st.fixed_dictionaries(
    {},
    optional={
        "body": json_values | st.text(max_size=3000),
        "to": json_values | st.from_regex(r"\+?[0-9 ,()-]{0,40}", fullmatch=True),
        "from": json_values | st.from_regex(r"(\+|MG)?[0-9a-f]{0,34}", fullmatch=True),
        "secret": json_values | st.just("hive://secret/") | st.just("AC/"),
    },
)
org = st.fixed_dictionaries({}, optional={"oid": json_values, "jwt": json_values, "ident": json_values})
blocks = st.fixed_dictionaries(
    {},
    optional={
        "org": org | json_values,
        "action": st.sampled_from(["run", "", "RUN"]) | json_values,
        "data": run_data | json_values,
        "config": json_values,
        "inv_id": json_values,
        "event_name": st.sampled_from(["subscribe", "unsubscribe", "update"]) | json_values,
        "conf": json_values,
        "error": json_values,
        "oid": json_values,
    },
)
envelopes = st.builds(
    lambda kind, block, key, extra: {"version": 20221218, "idempotency_key": key, kind: block, **extra},
    st.sampled_from(MESSAGE_TYPES),
    blocks | json_values,
    st.text(max_size=20) | json_values,
    st.dictionaries(st.text(max_size=8), json_values, max_size=2),
)


@pytest.fixture(autouse=True)
def no_traceback(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.INFO)
    yield
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged for a generated input"


def _check(response: Any, fake_twilio: FakeTwilio) -> None:
    assert response.status_code in KNOWN_STATUSES or (
        response.status_code == 500
        and response.json()["retriable"] is True
        and "internal error" not in response.json()["error"]
    ), response.content
    assert fake_twilio.posts() == []


@FUZZ
@given(envelope=envelopes)
def test_generated_envelopes_never_cause_an_unhandled_error_or_a_send(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, envelope: dict[str, Any]
) -> None:
    _check(intake.post_bytes(json.dumps(envelope).encode()), fake_twilio)


# Where a real `run` envelope can be broken: each path, and what is put there (or removed).
MUTATION_PATHS = [
    ("version",),
    ("idempotency_key",),
    ("request",),
    ("request", "action"),
    ("request", "inv_id"),
    ("request", "config"),
    ("request", "config", "twilio_secret"),
    ("request", "config", "default_from"),
    ("request", "org"),
    ("request", "org", "oid"),
    ("request", "org", "jwt"),
    ("request", "org", "ident"),
    ("request", "data"),
    ("request", "data", "body"),
    ("request", "data", "to"),
    ("request", "data", "from"),
    ("request", "data", "secret"),
]
REMOVE = object()


@FUZZ
@given(
    mutations=st.lists(
        st.tuples(st.sampled_from(MUTATION_PATHS), json_values | st.just(REMOVE)), min_size=1, max_size=3
    )
)
def test_mutated_real_envelopes_are_answered_and_only_valid_ones_send(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, mutations: list[tuple[tuple[str, ...], Any]]
) -> None:
    from tests.conftest import run_block

    envelope: dict[str, Any] = {"version": 20221218, "idempotency_key": str(uuid.uuid4())}
    envelope["request"] = run_block(tenant, to="+15005550001,+15005550002", body=f"fuzz {uuid.uuid4()}")
    for path, value in mutations:
        parent: Any = envelope
        for step in path[:-1]:
            parent = parent.get(step) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            if value is REMOVE:
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = value
    before = len(fake_twilio.posts())
    response = intake.post_bytes(json.dumps(envelope).encode())
    assert response.status_code in KNOWN_STATUSES, response.content
    if response.status_code != 200:
        assert len(fake_twilio.posts()) == before, "a refused envelope sent a text"
        assert response.json()["retriable"] is False


@FUZZ
@given(raw=st.binary(max_size=2000), compress=st.booleans())
def test_raw_bytes_never_cause_an_unhandled_error_or_a_send(
    intake: Intake, fake_twilio: FakeTwilio, raw: bytes, compress: bool
) -> None:
    _check(intake.post_bytes(raw, compress=compress), fake_twilio)


@FUZZ
@given(
    body=st.binary(min_size=1, max_size=500),
    cut=st.integers(min_value=0, max_value=40),
    flip=st.integers(min_value=0, max_value=255),
)
def test_broken_gzip_never_causes_an_unhandled_error(
    client: Any, settings: Any, fake_twilio: FakeTwilio, body: bytes, cut: int, flip: int
) -> None:
    from extension.envelope import sign

    data = bytearray(gzip.compress(body))
    data[min(cut, len(data) - 1)] ^= flip
    response = client.post(
        "/extension/",
        data=bytes(data[: len(data) - cut]),
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
        HTTP_LC_EXT_SIG=sign(settings.LC_SHARED_SECRET, body),
    )
    _check(response, fake_twilio)


@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(min_value=1, max_value=64), fill=st.sampled_from([b"0", b"{", b"\x00"]))
def test_oversized_bodies_are_refused_before_they_are_parsed(
    intake: Intake, fake_twilio: FakeTwilio, settings: Any, size: int, fill: bytes
) -> None:
    settings.LC_MAX_BODY_BYTES = 65_536
    response = intake.post_bytes(fill * (65_536 + size * 4096))
    assert response.status_code == 413
    _check(response, fake_twilio)
