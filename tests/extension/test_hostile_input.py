"""Issue 10: every hostile input the review reproduced is a clear 4xx, never a 500, never a traceback,
never retriable when a retry cannot help, and never echoes a secret. Each test failed on the code
before its fix."""

from __future__ import annotations

import gzip
import json
import logging
import time
import uuid
from typing import Any

import pytest

from deliveries import sms
from deliveries.models import AlertRequest, Credential, Delivery, ErrorReport
from extension.envelope import build, sign
from tests.conftest import Intake, Tenant, run_block
from tests.fakes.limacharlie import FakeLimaCharlie
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db


def _refused(response: Any, status: int, error: str) -> None:
    body = response.json()
    assert response.status_code == status, body
    assert error in body["error"], body
    assert body["retriable"] is False


def _nothing_stored() -> bool:
    return not Delivery.objects.exists() and not AlertRequest.objects.exists()


@pytest.fixture
def no_traceback(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.INFO)
    yield caplog
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged for a bad input"


# --- item 2: a long `to` ---------------------------------------------------------------------------


def _count_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    parsed: list[str] = []
    real = sms.normalize_number

    def counting(value: str) -> str:
        parsed.append(value)
        return real(value)

    monkeypatch.setattr(sms, "normalize_number", counting)
    return parsed


def test_a_to_over_the_cap_is_refused_before_any_number_is_parsed(
    intake: Intake, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, no_traceback: Any
) -> None:
    parsed = _count_parses(monkeypatch)
    to = ",".join(f"+1415555{i:04d}" for i in range(40_000))  # 520 KB, under the body limit

    started = time.process_time()
    response = intake.run(tenant, to=to)

    _refused(response, 400, "request.data.to has 40000 recipients; at most 20 are allowed (SMS_MAX_RECIPIENTS)")
    assert parsed == [tenant.sender]  # the sender only; it parsed all 40,000 numbers first (9.5 s of CPU)
    assert time.process_time() - started < 2
    assert _nothing_stored()


def test_a_replayed_key_gets_the_first_reply_without_parsing_its_numbers_again(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = intake.run(tenant, key="once", to="+15005550001,+15005550002")
    parsed: list[str] = []
    real = sms.phonenumbers.parse

    def counting(text: str, region: Any) -> Any:
        parsed.append(text)
        return real(text, region)

    monkeypatch.setattr(sms.phonenumbers, "parse", counting)

    again = intake.run(tenant, key="once", to="+15005550001,+15005550002")

    assert again.json() == first.json() and again.status_code == 200
    # A call is validated before its one read: a replay's numbers are the first call's, remembered.
    assert parsed == []
    assert len(fake_twilio.posts()) == 2


# --- item 4 and 13: unauthenticated and authenticated calls that were 500s -------------------------


def test_a_non_ascii_signature_is_a_401(intake: Intake, tenant: Tenant, no_traceback: Any) -> None:
    response = intake.post_bytes(build("heartbeat", {}, "k"), signature="é" * 64)
    assert response.status_code == 401  # TypeError in compare_digest: 500 and a traceback
    assert response.json()["retriable"] is False


def test_a_body_over_djangos_upload_limit_is_a_413_and_a_larger_limit_works(
    client: Any, settings: Any, tenant: Tenant, fake_twilio: FakeTwilio, no_traceback: Any
) -> None:
    big = b"0" * (3 * 1024 * 1024)  # over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB): RequestDataTooBig, a 500
    response = client.post("/extension/", data=big, content_type="application/json", HTTP_LC_EXT_SIG="00")
    assert response.status_code == 413

    settings.LC_MAX_BODY_BYTES = 4 * 1024 * 1024  # and a cap above 2.5 MiB could never work
    block = run_block(tenant, body="x" * (3 * 1024 * 1024))
    body = build("request", block, "big")
    response = client.post(
        "/extension/", data=body, content_type="application/json", HTTP_LC_EXT_SIG=sign(settings.LC_SHARED_SECRET, body)
    )
    assert response.status_code == 200, response.content
    assert Delivery.objects.get().truncated is True


def test_deeply_nested_json_is_a_400(intake: Intake, no_traceback: Any) -> None:
    body = b'{"version":20221218,"idempotency_key":"k","heartbeat":{},"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    _refused(intake.post_bytes(body), 400, "nests deeper than 32 levels")  # RecursionError: 500


@pytest.mark.parametrize(
    ("where", "value", "error"),
    [
        ("key", "k\x00", "idempotency_key contains a NUL character"),
        ("inv_id", "inv\x00", "request.inv_id contains a NUL character"),
        ("key", "k\ud800", "idempotency_key contains a lone UTF-16 surrogate"),
        ("ident", "rule\udfff", "request.org.ident contains a lone UTF-16 surrogate"),
        ("body", "alert\x00", "request.data.body contains a NUL character"),
        ("key", "k" * 300, "idempotency_key is longer than 255 characters"),
    ],
)
def test_a_value_the_database_cannot_store_is_a_permanent_400_on_both_backends(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, where: str, value: str, error: str, no_traceback: Any
) -> None:
    # PostgreSQL raised DataError (answered "database unavailable", retriable); SQLite stored it and sent.
    block = run_block(tenant)
    key = value if where == "key" else "k"
    if where == "inv_id":
        block["inv_id"] = value
    elif where == "ident":
        block["org"]["ident"] = value
    elif where == "body":
        block["data"]["body"] = value
    body = json.dumps({"version": 20221218, "idempotency_key": key, "request": block}).encode()
    _refused(intake.post_bytes(body), 400, error)
    assert _nothing_stored() and fake_twilio.posts() == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"version":20221218,"idempotency_key":"a","idempotency_key":"b","heartbeat":{}}', "repeats the JSON key"),
        (b'{"version":false,"idempotency_key":"k","heartbeat":{}}', "version must be a positive whole number"),
        (b'{"version":-1,"idempotency_key":"k","heartbeat":{}}', "version must be a positive whole number"),
        (b'{"version":{},"idempotency_key":"k","heartbeat":{}}', "version must be a positive whole number"),
    ],
)
def test_what_a_strict_parser_refuses_is_refused(intake: Intake, body: bytes, error: str) -> None:
    _refused(intake.post_bytes(body), 400, error)


@pytest.mark.parametrize("tail", [b"garbage", gzip.compress(b'{"x":1}')])
def test_gzip_with_data_after_its_end_is_refused(client: Any, settings: Any, tail: bytes) -> None:
    body = build("heartbeat", {}, "k")
    response = client.post(
        "/extension/",
        data=gzip.compress(body) + tail,
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
        HTTP_LC_EXT_SIG=sign(settings.LC_SHARED_SECRET, body),
    )
    _refused(response, 400, "data after the end of its gzip stream")


@pytest.mark.parametrize("code", ["9" * 30, "\u00b2", "\u0663\u0660\u0660\u0660\u0663", "-1"])
def test_an_error_code_that_is_not_a_small_ascii_number_is_kept_as_no_code(
    client: Any, tenant: Tenant, settings: Any, code: str, no_traceback: Any
) -> None:
    from tests.conftest import make_delivery
    from tests.deliveries.test_receipts import _callback

    settings.PUBLIC_BASE_URL = "https://sms.example.com"
    settings.ALLOWED_HOSTS = ["testserver", "sms.example.com"]
    delivery = make_delivery(tenant, status=Delivery.Status.QUEUED, twilio_sid="SM" + "a" * 32)

    response = _callback(client, tenant, delivery.id, "failed", ErrorCode=code)  # "²": int() raised, a 500

    assert response.status_code == 200
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code) == (Delivery.Status.FAILED, None)


# --- item 5: replays of state-changing calls -------------------------------------------------------


def test_a_replayed_unsubscribe_changes_nothing_again(intake: Intake, tenant: Tenant) -> None:
    event = {"org": {"oid": tenant.oid, "jwt": tenant.jwt}, "event_name": "unsubscribe"}
    assert intake.send("event", event, key="leave-1").status_code == 200
    intake.run(tenant, key="after")  # the org comes back; its credential is stored again
    assert Credential.objects.get(organization__oid=tenant.oid).usable

    assert intake.send("event", event, key="leave-1").status_code == 200  # the captured call, again

    assert Credential.objects.get(organization__oid=tenant.oid).usable  # erased again before the fix
    from deliveries.models import HandledCall

    assert HandledCall.objects.filter(idempotency_key="leave-1").count() == 1


def test_a_replayed_error_report_is_stored_once(intake: Intake) -> None:
    for _ in range(3):
        assert intake.send("error_report", {"error": "boom", "oid": ""}, key="report-1").status_code == 200
    assert ErrorReport.objects.count() == 1


@pytest.mark.parametrize("kind", ["event", "error_report"])
def test_a_state_changing_call_without_a_key_is_refused(intake: Intake, tenant: Tenant, kind: str) -> None:
    block = {"org": {"oid": tenant.oid}, "event_name": "update"} if kind == "event" else {"error": "x"}
    body = json.dumps({"version": 20221218, "idempotency_key": "", kind: block}).encode()
    _refused(intake.post_bytes(body), 400, f"idempotency_key is required for an {kind}")


# --- item 7: only the call's JWT -------------------------------------------------------------------


def test_an_operators_api_key_in_the_environment_is_never_used(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie, monkeypatch: pytest.MonkeyPatch
) -> None:
    import limacharlie.client

    operator_key = str(uuid.uuid4())
    fake_lc.api_keys.add(operator_key)
    monkeypatch.setenv("LC_API_KEY", operator_key)
    monkeypatch.setenv("LC_UID", "operator@example.com")
    monkeypatch.setattr(limacharlie.client, "JWT_URL", f"{fake_lc.url}/jwt")

    response = intake.send("request", {**run_block(tenant), "org": {"oid": tenant.oid, "jwt": "eyJbogus"}})

    # Before: the SDK minted a JWT with LC_API_KEY after the 401 and read the secret (200, sent).
    _refused(response, 400, "LimaCharlie refused to read secret 'twilio' with this call's token")
    assert [auth for _, auth in fake_lc.requests] == ["Bearer eyJbogus"]
    assert _nothing_stored()


# --- items 8 and 12: names ----------------------------------------------------------------------


@pytest.mark.parametrize("oid", ["not-a-uuid", "../../v1", "٠" * 8 + "-0000-0000-0000-" + "0" * 12, "é"])
def test_an_oid_that_is_not_a_uuid_is_refused_without_calling_limacharlie(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie, oid: str, no_traceback: Any
) -> None:
    block = {**run_block(tenant), "org": {"oid": oid, "jwt": tenant.jwt}}
    _refused(intake.send("request", block), 400, "request.org.oid: must be the organisation's id, a UUID")
    assert fake_lc.requests == []


def test_an_oid_that_is_not_a_uuid_never_reaches_the_log_context(
    intake: Intake, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from extension import views

    bound: list[dict[str, Any]] = []
    monkeypatch.setattr(views.logcontext, "bind", lambda **ids: bound.append(ids))
    pasted = "AC" + "2" * 32 + ":a-pasted-token-value"
    intake.send("request", {**run_block(tenant), "org": {"oid": pasted, "jwt": tenant.jwt}})
    intake.run(tenant)

    assert [ids["oid"] for ids in bound if "oid" in ids][:2] == [
        None,
        tenant.oid,
    ]  # every log line of the call carried it


@pytest.mark.parametrize(
    "secret",
    [".", "..", "hive://secret/x/../..", "hive://secret/..", "sécret", "a b", "x" * 65, "AC2222:notaslash-token-value"],
)
def test_a_secret_reference_that_is_not_a_plain_name_is_never_used_or_echoed(
    intake: Intake,
    tenant: Tenant,
    fake_lc: FakeLimaCharlie,
    secret: str,
    caplog: pytest.LogCaptureFixture,
    no_traceback: Any,
) -> None:
    response = intake.run(tenant, secret=secret)

    _refused(response, 400, "request.data.secret must be a secret name (")
    assert fake_lc.requests == []  # `..` reached the API as a path
    if len(secret) > 2:  # '.' and '..' are in any text
        assert secret not in response.content.decode()
        assert secret not in caplog.text


# --- item 11: rotating the Shared Secret -------------------------------------------------------


def test_during_a_rotation_both_the_current_and_the_previous_secret_verify(
    intake: Intake, tenant: Tenant, settings: Any, fake_twilio: FakeTwilio
) -> None:
    old = settings.LC_SHARED_SECRET
    settings.LC_SHARED_SECRET, settings.LC_SHARED_SECRET_PREVIOUS = "n" * 40, old

    assert intake.send("request", run_block(tenant), secret=old).status_code == 200  # a 401 before
    assert intake.post_bytes(build("heartbeat", {}, "k"), secret="n" * 40).status_code == 200
    assert intake.post_bytes(build("heartbeat", {}, "k"), secret="x" * 40).status_code == 401
    assert len(fake_twilio.posts()) == 1


# --- the other doors: no traceback for a stranger's oversized body ---------------------------------


def test_an_oversized_status_callback_is_a_413_and_an_oversized_login_logs_no_traceback(
    client: Any, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    import io

    from deliveries.models import StatusEvent

    console = next(h for h in logging.getLogger().handlers if h.name == "console")
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(console.formatter)
    for f in console.filters:
        handler.addFilter(f)
    logging.getLogger().addHandler(handler)
    try:
        big = b"a=" + b"x" * (3 * 1024 * 1024)  # over DATA_UPLOAD_MAX_MEMORY_SIZE
        form = "application/x-www-form-urlencoded"
        callback = client.post(f"/twilio/status/{uuid.uuid4()}/", data=big, content_type=form)
        login = client.post("/admin/login/", data=big, content_type=form)
    finally:
        logging.getLogger().removeHandler(handler)

    assert callback.status_code == 413  # an HTML 400 and a logged traceback before
    assert login.status_code == 400
    assert not StatusEvent.objects.exists()
    lines = [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    assert lines and not [line for line in lines if "exc_info" in line or line["level"] == "ERROR"], lines


@pytest.mark.parametrize("field", ["To", "ErrorMessage", "Extra\x00Key"])
def test_a_signed_callback_with_a_nul_is_a_400_on_both_backends(
    client: Any, tenant: Tenant, settings: Any, field: str, no_traceback: Any
) -> None:
    # Found by the adversarial suite on PostgreSQL: the StatusEvent insert raised DataError (a 500).
    from deliveries.models import StatusEvent
    from tests.conftest import make_delivery
    from tests.deliveries.test_receipts import _callback

    settings.PUBLIC_BASE_URL = "https://sms.example.com"
    settings.ALLOWED_HOSTS = ["testserver", "sms.example.com"]
    delivery = make_delivery(tenant, status=Delivery.Status.QUEUED, twilio_sid="SM" + "a" * 32)

    response = _callback(client, tenant, delivery.id, "delivered", **{field: "a\x00b"})

    assert response.status_code == 400
    assert not StatusEvent.objects.exists()
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.QUEUED


@pytest.mark.parametrize("jwt", ["eyJé", "eyJ\u2603", "eyJ a", "eyJ\n"])
def test_a_jwt_that_cannot_travel_in_a_header_is_a_permanent_400(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie, jwt: str, no_traceback: Any
) -> None:
    # Found by the mutation fuzz: a UnicodeEncodeError in the SDK, answered 500 "unreachable", retriable.
    response = intake.send("request", {**run_block(tenant), "org": {"oid": tenant.oid, "jwt": jwt}})
    _refused(response, 400, "request.org.jwt: must be the token LimaCharlie sent")
    assert fake_lc.requests == [] and _nothing_stored()
