"""POST /extension/: every row of the bad-input-and-faults table, with envelopes built, gzipped
and signed exactly as LimaCharlie does."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.db import connection

from deliveries.models import AlertRequest, Attempt, Credential, Delivery, ErrorReport, Organization
from extension.envelope import build
from tests.conftest import Intake, Tenant, run_block
from tests.fakes.limacharlie import FakeLimaCharlie
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db


def _nothing_stored() -> bool:
    return not Delivery.objects.exists() and not AlertRequest.objects.exists() and not Attempt.objects.exists()


# --- a run request that works ---------------------------------------------------------------------


def test_a_signed_run_request_creates_one_delivery_and_posts_exactly_once_to_twilio(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    response = intake.run(tenant, key="detect-1", body="Detection: lateral movement on web-3")

    assert response.status_code == 200
    delivery = Delivery.objects.get()
    assert response.json() == {
        "version": 20221218,
        "data": {
            "deliveries": [
                {"id": str(delivery.id), "to": tenant.recipient, "status": "pending", "ack_code": delivery.ack_code}
            ],
            "segments": 1,
            "truncated": False,
        },
    }
    # Acknowledgement by reply is on by default: the alert ends with its code.
    assert len(delivery.ack_code) == 4
    assert fake_twilio.posts() == [
        {
            "To": tenant.recipient,
            "From": tenant.sender,
            "Body": f"Detection: lateral movement on web-3\nReply {delivery.ack_code} to acknowledge",
            "ValidityPeriod": "3600",
        }
    ]
    assert fake_twilio.received[0].account_sid == tenant.account_sid
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.QUEUED
    assert delivery.twilio_sid == fake_twilio.messages[0]["sid"]
    assert (delivery.idempotency_key, delivery.ident) == ("detect-1", "dr-general/ext-twilio-rule")
    assert delivery.inv_id.startswith("inv-")
    attempt = delivery.attempts.get()
    assert (attempt.number, attempt.trigger, attempt.outcome, attempt.http_status) == (1, "automatic", "accepted", 201)
    assert attempt.twilio_request_id.startswith("RQ") and attempt.finished_at is not None


def test_it_sends_one_delivery_per_recipient_and_drops_repeated_numbers(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    response = intake.run(tenant, to="+15005550001, +1 (500) 555-0002,+15005550001")

    assert response.status_code == 200
    assert [d["to"] for d in response.json()["data"]["deliveries"]] == ["+15005550001", "+15005550002"]
    assert sorted(p["To"] for p in fake_twilio.posts()) == ["+15005550001", "+15005550002"]
    assert Delivery.objects.count() == 2


def test_it_stores_the_credential_encrypted_at_rest(intake: Intake, tenant: Tenant) -> None:
    intake.run(tenant)

    credential = Delivery.objects.get().credential
    assert credential is not None
    assert (credential.account_sid, credential.auth_token) == (tenant.account_sid, tenant.auth_token)
    with connection.cursor() as cursor:
        cursor.execute("SELECT auth_token FROM deliveries_credential WHERE id = %s", [credential.id])
        stored = cursor.fetchone()[0]
    assert tenant.auth_token not in stored and stored.startswith("gAAAA")


def test_it_reads_the_secret_with_the_calls_jwt_only(intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie) -> None:
    intake.run(tenant)

    assert fake_lc.requests == [(f"/v1/hive/secret/{tenant.oid}/twilio/data", f"Bearer {tenant.jwt}")]


@pytest.mark.parametrize("reference", ["hive://secret/sms-creds", "sms-creds"])
def test_it_resolves_a_secret_named_in_the_extension_config(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie, fake_twilio: FakeTwilio, reference: str
) -> None:
    fake_lc.add_secret(tenant.oid, "sms-creds", tenant.credential)
    block = run_block(tenant)
    block["config"] = {"twilio_secret": reference}
    response = intake.send("request", block)

    assert response.status_code == 200
    assert fake_lc.requests[0][0] == f"/v1/hive/secret/{tenant.oid}/sms-creds/data"
    assert len(fake_twilio.posts()) == 1


def test_a_secret_parameter_wins_over_the_config_and_may_arrive_already_resolved(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie, fake_twilio: FakeTwilio
) -> None:
    block = run_block(tenant, secret=tenant.credential)
    block["config"] = {"twilio_secret": "hive://secret/other"}
    response = intake.send("request", block)

    assert response.status_code == 200
    assert fake_lc.requests == []  # nothing to read: the platform resolved it
    assert fake_twilio.received[0].account_sid == tenant.account_sid


def test_a_config_default_sender_covers_a_missing_from(intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio) -> None:
    block = run_block(tenant, **{"from": None})
    block["config"] = {"default_from": "+15005550009"}
    response = intake.send("request", block)

    assert response.status_code == 200
    assert fake_twilio.posts()[0]["From"] == "+15005550009"


def test_a_messaging_service_sid_is_sent_as_messaging_service_sid(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    service = "MG" + "ab" * 16
    response = intake.run(tenant, **{"from": service})

    assert response.status_code == 200
    form = fake_twilio.posts()[0]
    assert form["MessagingServiceSid"] == service and "From" not in form
    assert Delivery.objects.get().status == Delivery.Status.ACCEPTED


def test_it_replaces_characters_that_needlessly_force_ucs2(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    intake.run(tenant, body="\u201cmimikatz\u201d\u00a0seen \u2014 it\u2019s bad")

    delivery = Delivery.objects.get()
    assert fake_twilio.posts()[0]["Body"] == f'"mimikatz" seen - it\'s bad\nReply {delivery.ack_code} to acknowledge'
    assert (delivery.encoding, delivery.segments) == ("gsm7", 1)


def test_it_truncates_a_long_event_body_with_a_visible_marker(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, settings: Any
) -> None:
    settings.SMS_MAX_BODY_CHARS = 300
    event = "map[event:map[COMMAND_LINE:" + "A" * 5000 + "]]"
    response = intake.run(tenant, body=event)

    sent = fake_twilio.posts()[0]["Body"]
    delivery = Delivery.objects.get()
    # The cap holds the acknowledgement instruction too; the marker ends the alert's own text.
    assert len(sent) == 300 and sent.endswith(f" [truncated]\nReply {delivery.ack_code} to acknowledge")
    assert (delivery.original_length, delivery.truncated, delivery.segments) == (len(event), True, 2)
    assert response.json()["data"]["truncated"] is True


# --- deduplication ----------------------------------------------------------------------------------


def test_a_repeated_idempotency_key_gets_the_first_reply_and_sends_nothing_more(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, fake_lc: FakeLimaCharlie
) -> None:
    first = intake.run(tenant, key="retry-me")
    second = intake.run(tenant, key="retry-me", to="+15005550002")

    assert second.status_code == 200
    assert second.json() == first.json()
    assert Delivery.objects.count() == 1 and len(fake_twilio.posts()) == 1
    assert len(fake_lc.requests) == 1  # the repeat did not even read the secret


def test_the_same_key_from_another_organisation_is_a_different_call(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, fake_lc: FakeLimaCharlie
) -> None:
    other = Tenant(oid=str(uuid.uuid4()), jwt="other-jwt", account_sid=tenant.account_sid, auth_token=tenant.auth_token)
    fake_lc.add_org(other.oid, other.jwt)
    fake_lc.add_secret(other.oid, "twilio", other.credential)

    intake.run(tenant, key="shared-key")
    intake.run(other, key="shared-key")

    assert Delivery.objects.count() == 2 and len(fake_twilio.posts()) == 2


# --- signature ----------------------------------------------------------------------------------


def test_an_unsigned_call_gets_200_with_an_empty_reply_and_does_nothing(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    response = intake.post_bytes(build("request", run_block(tenant), "k"), signature=None)

    # The reply shape the API document declares (it was `{}`, a schema violation on every probe).
    assert (response.status_code, response.json()) == (200, {"version": 20221218, "data": {}})
    assert _nothing_stored() and fake_twilio.posts() == []


def test_a_wrong_signature_gets_401_and_does_nothing(intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio) -> None:
    response = intake.post_bytes(build("request", run_block(tenant), "k"), secret="not-the-shared-secret")

    assert response.status_code == 401
    assert response.json()["error"] == "lc-ext-sig does not match the body"
    assert _nothing_stored() and fake_twilio.posts() == []


def test_a_tampered_body_gets_401(intake: Intake, tenant: Tenant, settings: Any) -> None:
    from extension.envelope import sign

    body = build("request", run_block(tenant), "k")
    signature = sign(settings.LC_SHARED_SECRET, body)
    response = intake.post_bytes(body.replace(tenant.recipient.encode(), b"+15005550099"), signature=signature)

    assert response.status_code == 401 and _nothing_stored()


def test_without_a_shared_secret_every_signed_call_is_refused_with_a_log_line(
    intake: Intake, tenant: Tenant, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    body = build("heartbeat", {}, "k")
    signature = __import__("extension.envelope", fromlist=["sign"]).sign(settings.LC_SHARED_SECRET, body)
    settings.LC_SHARED_SECRET = ""
    response = intake.post_bytes(body, signature=signature)

    assert response.status_code == 500
    assert response.json()["retriable"] is True
    assert "LC_SHARED_SECRET is not set" in caplog.text


def test_a_plain_uncompressed_body_is_accepted(intake: Intake, tenant: Tenant) -> None:
    response = intake.send("heartbeat", {}, compress=False)

    assert (response.status_code, response.json()) == (200, {"version": 20221218, "data": {}})


def test_the_reply_is_json_whatever_the_caller_says_it_accepts(client: Any, settings: Any, tenant: Tenant) -> None:
    from extension.envelope import sign

    body = build("heartbeat", {}, "k")
    for accept in ("text/html", "application/xml", "*/*"):
        response = client.post(
            "/extension/",
            data=body,
            content_type="application/json",
            HTTP_ACCEPT=accept,
            HTTP_LC_EXT_SIG=sign(settings.LC_SHARED_SECRET, body),
        )
        assert (response.status_code, response["Content-Type"]) == (200, "application/json"), accept
        assert response.json() == {"version": 20221218, "data": {}}


# --- malformed requests ----------------------------------------------------------------------------


def test_a_body_that_says_gzip_but_is_not_gets_400(client: Any, settings: Any) -> None:
    from extension.envelope import sign

    body = build("heartbeat", {}, "k")
    response = client.post(
        "/extension/",
        data=body,
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
        HTTP_LC_EXT_SIG=sign(settings.LC_SHARED_SECRET, body),
    )
    assert response.status_code == 400
    assert response.json() == {
        "version": 20221218,
        "data": {},
        "error": "body is not valid gzip although Content-Encoding says gzip",
        "retriable": False,
    }


def test_a_body_over_the_decompressed_cap_is_refused(intake: Intake, tenant: Tenant, settings: Any) -> None:
    settings.LC_MAX_BODY_BYTES = 2048
    response = intake.run(tenant, body="x" * 5000)

    assert response.status_code == 413
    assert "larger than 2048 bytes" in response.json()["error"] and _nothing_stored()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "body is not valid JSON"),
        (b'{"version":20221218,"idempotency_key":"k"}', "no message type"),
        (b'{"version":20221218,"idempotency_key":"k","request":[]}', "request must be a JSON object"),
    ],
)
def test_invalid_envelopes_get_400_with_the_reason(intake: Intake, body: bytes, error: str) -> None:
    response = intake.post_bytes(body)

    assert response.status_code == 400
    assert error in response.json()["error"] and response.json()["retriable"] is False
    assert _nothing_stored()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"to": None}, "request.data.to: This field is required."),
        ({"to": "4155550100"}, "request.data.to '4155550100' must be in E.164 form"),
        ({"to": "+1415"}, "request.data.to '+1415' has the wrong number of digits"),
        ({"to": "+15005550001,not-a-number"}, "request.data.to 'not-a-number' must be in E.164 form"),
        ({"to": 15005550001}, "request.data.to: must be a string or a list of strings"),
        ({"from": None}, "request.data.from is missing"),
        ({"from": "Acme"}, "request.data.from must be in E.164 form"),
        ({"from": ["+15005550006"]}, "request.data.from: Not a valid string."),
        ({"body": ""}, "request.data.body: must be non-empty text"),
        ({"body": "   \n "}, "request.data.body must be non-empty text"),
        ({"body": None}, "request.data.body: This field is required."),
        ({"body": {"event": 1}}, "request.data.body: Not a valid string."),
    ],
)
def test_bad_run_fields_get_400_naming_the_field_and_nothing_is_sent(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, fake_lc: FakeLimaCharlie, data: dict[str, Any], error: str
) -> None:
    response = intake.run(tenant, **data)

    assert response.status_code == 400
    assert response.json()["error"].startswith(error)
    assert response.json()["retriable"] is False
    assert _nothing_stored() and fake_twilio.posts() == [] and fake_lc.requests == []


def test_concurrent_calls_each_get_their_own_values_and_errors() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from extension.handlers import RunDataSerializer

    def validate(n: int) -> tuple[int, Any]:
        serializer = RunDataSerializer(data={"body": f"alert {n}", "to": f"+1500555{n:04d}"} if n % 3 else {"to": 1})
        return n, serializer.validated_data["body"] if serializer.is_valid() else serializer.errors

    with ThreadPoolExecutor(8) as pool:
        results = dict(pool.map(validate, range(600)))
    for n, result in results.items():
        expected = (
            f"alert {n}"
            if n % 3
            else {"body": ["This field is required."], "to": ["must be a string or a list of strings"]}
        )
        assert result == expected


def test_an_unknown_action_is_a_permanent_error(intake: Intake, tenant: Tenant) -> None:
    block = run_block(tenant)
    block["action"] = "call"
    response = intake.send("request", block)

    assert response.status_code == 400
    assert response.json() == {
        "version": 20221218,
        "data": {},
        "retriable": False,
        "error": "request.action 'call' is not supported: the actions are 'run' and 'request_approval'",
    }


def test_a_missing_org_is_named(intake: Intake, tenant: Tenant) -> None:
    block = run_block(tenant)
    del block["org"]
    response = intake.send("request", block)

    assert (response.status_code, response.json()["error"]) == (400, "request.org must be a JSON object")


# --- credentials ------------------------------------------------------------------------------------


def _assert_secret_free(response: Any, tenant: Tenant) -> None:
    text = response.content.decode()
    for secret in (tenant.jwt, tenant.auth_token, tenant.credential):
        assert secret not in text


def test_a_missing_secret_is_a_permanent_error_naming_it(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie, fake_twilio: FakeTwilio
) -> None:
    block = run_block(tenant)
    block["config"] = {"twilio_secret": "hive://secret/nope"}
    response = intake.send("request", block)

    assert response.status_code == 400
    assert response.json()["error"] == "secret 'nope' does not exist in the organisation's Secrets Manager"
    assert response.json()["retriable"] is False
    assert _nothing_stored() and fake_twilio.posts() == []


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("just-a-token", "secret 'twilio' is not of the form ACCOUNT_SID/AUTH_TOKEN"),
        ("XX0123/abc", "secret 'twilio': the part before '/' is not a Twilio Account SID"),
        ("AC" + "0" * 32 + "/", "secret 'twilio': the Auth Token after '/' is empty"),
    ],
)
def test_a_malformed_secret_is_a_permanent_error_that_never_shows_its_value(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie, value: str, error: str
) -> None:
    fake_lc.add_secret(tenant.oid, "twilio", value)
    response = intake.run(tenant)

    assert response.status_code == 400
    assert response.json()["error"].startswith(error)
    assert value.split("/")[-1] not in response.json()["error"] or value.endswith("/")
    assert _nothing_stored()


def test_a_refused_jwt_is_a_permanent_error(intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie) -> None:
    fake_lc.add_org(tenant.oid, "a-newer-jwt")
    response = intake.run(tenant)

    assert response.status_code == 400
    assert "refused to read secret 'twilio'" in response.json()["error"]
    _assert_secret_free(response, tenant)
    assert _nothing_stored()


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_failing_limacharlie_api_is_a_retriable_error(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie, status: int
) -> None:
    fake_lc.fail_next(status)
    response = intake.run(tenant)

    assert response.status_code == 500
    assert response.json()["retriable"] is True and "secret 'twilio'" in response.json()["error"]
    assert _nothing_stored()


def test_an_unreachable_limacharlie_api_is_a_retriable_error(intake: Intake, tenant: Tenant, settings: Any) -> None:
    settings.LC_API_URL = "http://127.0.0.1:9"  # discard port: connection refused
    response = intake.run(tenant)

    assert (response.status_code, response.json()["retriable"]) == (500, True)
    assert response.json()["error"] == "LimaCharlie API unreachable reading secret 'twilio'"
    assert _nothing_stored()


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_database_is_a_retriable_error_and_nothing_is_half_written(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent/dir/db.sqlite3"
    else:
        connection.settings_dict["PORT"] = "9"
    try:
        response = intake.run(tenant)
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)

    assert response.status_code == 500
    assert response.json() == {
        "version": 20221218,
        "data": {},
        "error": "database unavailable, try again",
        "retriable": True,
    }
    assert _nothing_stored() and fake_twilio.posts() == []


# --- the other message types ------------------------------------------------------------------------


def test_a_heartbeat_gets_200(intake: Intake) -> None:
    response = intake.send("heartbeat", {})
    assert (response.status_code, response.json()) == (200, {"version": 20221218, "data": {}})


def test_the_schema_declares_every_run_parameter_a_rule_may_send(intake: Intake) -> None:
    data = intake.send("schema_request", {}).json()["data"]

    run = data["request_schema"]["run"]
    fields = run["parameters"]["fields"]
    assert {name: f["data_type"] for name, f in fields.items()} == {
        "body": "string",
        "from": "string",
        "to": "string",
        "secret": "secret",
        "ack_within": "integer",
        "escalate": "enum",
        "context": "json",
    }
    assert fields["to"]["is_list"] is True and fields["escalate"]["enum_values"] == ["call", "next"]
    assert run["parameters"]["requirements"] == [["body"], ["to"]]
    assert data["config_schema"]["fields"]["twilio_secret"]["default_value"] == "hive://secret/twilio"
    assert data["config_schema"]["fields"]["twilio_secret"]["data_type"] == "secret"
    assert set(data["config_schema"]["fields"]) == {
        "twilio_secret",
        "default_from",
        "messaging_service_sid",
        "ack_by_reply",
        "ack_notify_others",
        "events",
    }
    assert data["required_events"] == ["subscribe", "unsubscribe", "update"]
    assert data["views"] == [{"name": "", "layout_type": "action", "default_requests": ["run"]}]


def test_subscribe_and_unsubscribe_are_recorded_and_leaving_erases_the_credential(
    intake: Intake, tenant: Tenant
) -> None:
    org_block = {"oid": tenant.oid, "jwt": tenant.jwt, "ident": "x"}
    intake.send("event", {"org": org_block, "event_name": "subscribe", "data": {}, "config": {}})
    intake.run(tenant)
    assert Credential.objects.get(organization__oid=tenant.oid).usable

    response = intake.send("event", {"org": org_block, "event_name": "unsubscribe", "data": {}, "config": {}})

    assert response.status_code == 200
    org = Organization.objects.get(oid=tenant.oid)
    assert org.subscription == "unsubscribed" and org.unsubscribed_at is not None
    assert list(Credential.objects.filter(organization=org).values_list("auth_token", flat=True)) == [""]


def test_an_unknown_event_name_is_refused(intake: Intake, tenant: Tenant) -> None:
    response = intake.send("event", {"org": {"oid": tenant.oid}, "event_name": "explode"})
    assert (response.status_code, response.json()["error"]) == (
        400,
        "event.event_name must be subscribe, unsubscribe or update",
    )


def test_conf_validation_accepts_a_good_config(intake: Intake, tenant: Tenant) -> None:
    response = intake.send(
        "conf_validation",
        {"org": {"oid": tenant.oid, "jwt": tenant.jwt}, "conf": {"twilio_secret": "hive://secret/twilio"}},
    )
    assert (response.status_code, response.json()) == (200, {"version": 20221218, "data": {}})


@pytest.mark.parametrize(
    ("conf", "error"),
    [
        ({"twilio_secret": "hive://secret/missing"}, "secret 'missing' does not exist"),
        ({"twilio_secret": "hive://other/x"}, "config twilio_secret must be a secret name ("),
        ({"default_from": "0800 FLOWERS"}, "config default_from must be in E.164 form"),
        ({"messaging_service_sid": "+15005550006"}, "config messaging_service_sid must be a Messaging Service SID"),
    ],
)
def test_conf_validation_says_exactly_what_is_wrong(
    intake: Intake, tenant: Tenant, conf: dict[str, str], error: str
) -> None:
    response = intake.send("conf_validation", {"org": {"oid": tenant.oid, "jwt": tenant.jwt}, "conf": conf})

    assert response.status_code == 400
    assert response.json()["error"].startswith(error) and response.json()["retriable"] is False


def test_an_error_report_is_stored_and_logged(intake: Intake, caplog: pytest.LogCaptureFixture) -> None:
    oid = "0f3c2c1e-6d7b-4f6e-9a51-2b7d3c4e5f60"
    response = intake.send("error_report", {"error": "extension timed out", "oid": oid})

    assert response.status_code == 200
    assert list(ErrorReport.objects.values_list("oid", "error")) == [(oid, "extension timed out")]
    assert f"LimaCharlie error report for org {oid}: extension timed out" in caplog.text


def test_no_reply_or_log_line_contains_a_jwt_or_token(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    responses = [intake.run(tenant), intake.run(tenant, to="bad")]
    fake_lc.add_org(tenant.oid, "rotated")
    responses.append(intake.run(tenant))

    for response in responses:
        _assert_secret_free(response, tenant)
    for secret in (tenant.jwt, tenant.auth_token):
        assert secret not in caplog.text
    assert json.dumps([r.json() for r in responses])  # all replies were JSON
