"""One handler per LimaCharlie message type. Each returns (HTTP status, reply envelope).

Permanent failures answer 400 with `retriable: false` (LimaCharlie never retries a 4xx); transient
ones answer 500 with `retriable: true`. Every error names the field and why, never a secret.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any

from django.conf import settings
from rest_framework import serializers

from deliveries import services as delivery_services
from deliveries.sms import InvalidNumber, ack_instruction, normalize_sender, parse_recipients, prepare_body
from extension import adapter, credentials, loop
from extension.envelope import EnvelopeError, reply
from extension.schema import (
    ACK_WITHIN_MAX_MINUTES,
    CONFIG_ACK_BY_REPLY,
    CONFIG_ACK_NOTIFY_OTHERS,
    CONFIG_DEFAULT_FROM,
    CONFIG_MESSAGING_SERVICE,
    CONFIG_TWILIO_SECRET,
    ESCALATIONS,
    extension_schema,
)

logger = logging.getLogger(__name__)
Reply = tuple[int, dict[str, Any]]
ERROR_REPORT_CHARS = 10_000  # what is kept of one error report


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of quietly turning them into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


OID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII | re.IGNORECASE)


def oid_valid(value: str) -> bool:
    return bool(OID.fullmatch(value))


class OrgSerializer(serializers.Serializer):
    oid = StrictCharField(max_length=36)
    jwt = StrictCharField(required=False, allow_blank=True, default="", trim_whitespace=False, max_length=16_384)
    ident = StrictCharField(required=False, allow_blank=True, default="", max_length=1024)

    def validate_jwt(self, value: str) -> str:
        # It travels in an HTTP header: anything but printable ASCII could not be sent (it was a
        # UnicodeEncodeError, answered as "LimaCharlie API unreachable", retriable).
        if value and not (value.isascii() and value.isprintable() and " " not in value):
            raise serializers.ValidationError("must be the token LimaCharlie sent: printable ASCII, no spaces")
        return value

    def validate_oid(self, value: str) -> str:
        # The oid becomes part of the LimaCharlie API path and a stored key: a UUID, nothing else.
        if not oid_valid(value):
            raise serializers.ValidationError("must be the organisation's id, a UUID")
        return value.lower()


class RecipientsField(serializers.Field):
    """`to`: one string of comma-separated numbers, or a list of them (a YAML list in a D&R rule)."""

    default_error_messages = {
        "invalid": "must be a string or a list of strings",
        "blank": "must hold at least one number in E.164 form",
    }

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, list) and all(isinstance(item, str) for item in data):
            data = ",".join(data)
        if not isinstance(data, str):
            self.fail("invalid")
        if not data.strip():
            self.fail("blank")
        return data


class RunDataSerializer(serializers.Serializer):
    body = StrictCharField(trim_whitespace=False, error_messages={"blank": "must be non-empty text"})
    to = RecipientsField()
    secret = StrictCharField(required=False, allow_blank=True, default="", max_length=4096)
    # Escalation. Rendered templates arrive as text, so a number may come as "5".
    ack_within = serializers.FloatField(
        required=False, allow_null=True, default=None, min_value=0.01, max_value=ACK_WITHIN_MAX_MINUTES
    )
    escalate = serializers.ChoiceField(choices=ESCALATIONS, required=False, allow_blank=True, default="")
    # `context` is also the serializer's own attribute; declared by name, DRF takes it as a field.
    vars()["context"] = loop.ContextField(required=False, allow_null=True, default=None)
    # `from` is a Python keyword, so it is declared by name.
    vars()["from"] = StrictCharField(required=False, allow_blank=True, default="")


def _first_error(errors: Any, prefix: str) -> str:
    """Flatten DRF's nested errors to 'request.data.to: This field is required.'"""
    if isinstance(errors, dict):
        name, detail = next(iter(errors.items()))
        where = prefix if name == "non_field_errors" else f"{prefix}.{name}"
        return _first_error(detail, where)
    if isinstance(errors, list) and errors:
        return _first_error(errors[0], prefix)
    return f"{prefix}: {errors}"


def _validated(serializer_class: type[serializers.Serializer], data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise EnvelopeError(f"{where} must be a JSON object")
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        raise EnvelopeError(_first_error(serializer.errors, where))
    return dict(serializer.validated_data)


def _config(block: dict[str, Any], where: str) -> dict[str, Any]:
    config = block.get("config") or {}
    if not isinstance(config, dict):
        raise EnvelopeError(f"{where}.config must be a JSON object")
    for key in (CONFIG_TWILIO_SECRET, CONFIG_DEFAULT_FROM, CONFIG_MESSAGING_SERVICE):
        if config.get(key) is not None and not isinstance(config[key], str):
            raise EnvelopeError(f"{where}.config.{key} must be a string")
    for key in (CONFIG_ACK_BY_REPLY, CONFIG_ACK_NOTIFY_OTHERS):
        if config.get(key) is not None and _flag(config[key]) is None:
            raise EnvelopeError(f"{where}.config.{key} must be true or false")
    loop.event_kinds(config, where)  # checked here; read by run
    return config


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _ack_plan(data: dict[str, Any], config: dict[str, Any], sender: str) -> delivery_services.AckPlan:
    """Acknowledgement codes (on unless the configuration turns them off) and the rule's escalation."""
    minutes, escalate = data.get("ack_within"), data.get("escalate") or ""
    if escalate and not minutes:
        raise EnvelopeError("request.data.escalate needs request.data.ack_within (minutes to acknowledge)")
    if escalate == "call" and sender.startswith("MG"):
        raise EnvelopeError(
            "request.data.from must be a Twilio phone number for escalate: call (a Messaging Service cannot call)"
        )
    if escalate == "call" and not settings.PUBLIC_BASE_URL:
        raise EnvelopeError("escalate: call needs this service's PUBLIC_BASE_URL, for the keypress to reach it")
    codes = _flag(config.get(CONFIG_ACK_BY_REPLY))
    return delivery_services.AckPlan(
        codes=True if codes is None else codes,
        ack_within_seconds=max(1, round(minutes * 60)) if minutes else None,
        escalate=escalate,
        notify_others=bool(_flag(config.get(CONFIG_ACK_NOTIFY_OTHERS))),
    )


def _credential_failure(exc: credentials.CredentialError) -> Reply:
    if exc.retriable:
        return 500, reply(error=exc.message, retriable=True)
    return 400, reply(error=exc.message, retriable=False)


# --- message types ---------------------------------------------------------------------------------


def heartbeat(block: dict[str, Any], envelope: dict[str, Any]) -> Reply:
    return 200, reply()


def schema_request(block: dict[str, Any], envelope: dict[str, Any]) -> Reply:
    return 200, reply(extension_schema())


def _required_key(envelope: dict[str, Any], what: str) -> str:
    """The idempotency key: the only replay defence (`lc-ext-sig` has no nonce), so a call that
    changes state must carry one."""
    key = envelope.get("idempotency_key") or ""
    if not key:
        raise EnvelopeError(f"idempotency_key is required for {what}")
    return str(key)


def error_report(block: dict[str, Any], envelope: dict[str, Any]) -> Reply:
    key = _required_key(envelope, "an error_report")
    error, oid = block.get("error", ""), block.get("oid", "")
    if not isinstance(oid, str) or (oid and not oid_valid(oid)):
        raise EnvelopeError("error_report.oid must be the organisation's id, a UUID, or empty")
    text = error if isinstance(error, str) else repr(error)
    delivery_services.error_report_record(oid=oid.lower(), error=text[:ERROR_REPORT_CHARS], idempotency_key=key)
    return 200, reply()


def event(block: dict[str, Any], envelope: dict[str, Any]) -> Reply:
    key = _required_key(envelope, "an event")
    org = _validated(OrgSerializer, block.get("org"), "event.org")
    name = block.get("event_name")
    if name not in ("subscribe", "unsubscribe", "update"):
        raise EnvelopeError("event.event_name must be subscribe, unsubscribe or update")
    recorded = delivery_services.organization_record_event(oid=org["oid"], event_name=name, idempotency_key=key)
    if recorded is not None:
        adapter.sync(event_name=name, oid=org["oid"], jwt=org["jwt"])
    if recorded is not None and name in ("subscribe", "update"):
        # The desk shows organisations by name; reading it never fails the event.
        delivery_services.organization_name_record(
            oid=org["oid"], name=credentials.organization_name(oid=org["oid"], jwt=org["jwt"])
        )
    return 200, reply()


def conf_validation(block: dict[str, Any], envelope: dict[str, Any]) -> Reply:
    org = _validated(OrgSerializer, block.get("org"), "conf_validation.org")
    conf = block.get("conf") or {}
    if not isinstance(conf, dict):
        raise EnvelopeError("conf_validation.conf must be a JSON object")
    _config({"config": conf}, "conf_validation")
    for key in (CONFIG_DEFAULT_FROM, CONFIG_MESSAGING_SERVICE):
        if conf.get(key):
            try:
                sender = normalize_sender(conf[key])
            except InvalidNumber as exc:
                return 400, reply(error=f"config {key} {exc}", retriable=False)
            if key == CONFIG_MESSAGING_SERVICE and not sender.startswith("MG"):
                return 400, reply(error=f"config {key} must be a Messaging Service SID (MG + 32 hex)", retriable=False)
    reference = credentials.choose_reference(None, conf.get(CONFIG_TWILIO_SECRET))
    try:
        credentials.fetch_twilio_credential(
            oid=org["oid"], jwt=org["jwt"], reference=reference, field=f"config {CONFIG_TWILIO_SECRET}"
        )
    except credentials.CredentialError as exc:
        return _credential_failure(exc)
    # Where to point the Twilio number's (or Messaging Service's) incoming-message webhook.
    inbound = f"{settings.PUBLIC_BASE_URL}/twilio/inbound/{org['oid']}/" if settings.PUBLIC_BASE_URL else ""
    return 200, reply({"inbound_webhook_url": inbound} if inbound else {})


def request(block: dict[str, Any], envelope: dict[str, Any]) -> Reply:
    action = block.get("action")
    if action == "request_approval":
        return run(block, envelope, approval=True)
    if action != "run":
        raise EnvelopeError(f"request.action {action!r} is not supported: the actions are 'run' and 'request_approval'")
    return run(block, envelope)


def _sender(data: dict[str, Any], config: dict[str, Any]) -> str:
    """The rule's `from`, else the configured default number, else the Messaging Service."""
    value = data["from"] or config.get(CONFIG_DEFAULT_FROM) or config.get(CONFIG_MESSAGING_SERVICE) or ""
    if not value:
        raise EnvelopeError(
            "request.data.from is missing: give the sending Twilio number in E.164 form, or set a default "
            "sender in the extension configuration"
        )
    try:
        return normalize_sender(value)
    except InvalidNumber as exc:
        raise EnvelopeError(f"request.data.from {exc}") from None


def _recipients(to: str) -> list[str]:
    try:
        return parse_recipients(to, settings.SMS_MAX_RECIPIENTS)
    except InvalidNumber as exc:
        raise EnvelopeError(f"request.data.to {exc}") from None


def _inv_id(block: dict[str, Any]) -> str:
    inv_id = block.get("inv_id") or ""
    if not isinstance(inv_id, str):
        raise EnvelopeError("request.inv_id must be a string")
    if len(inv_id) > 255:
        raise EnvelopeError("request.inv_id is longer than 255 characters")
    return inv_id


def _reference(data: dict[str, Any], config: dict[str, Any]) -> tuple[str, str]:
    """Which secret (the rule's, the configuration's, or the default), and the field that named it."""
    configured = config.get(CONFIG_TWILIO_SECRET) or ""
    if data["secret"].strip():
        field = "request.data.secret"
    else:
        field = f"config {CONFIG_TWILIO_SECRET}" if configured.strip() else "the default secret"
    return credentials.choose_reference(data["secret"], configured), field


def run(block: dict[str, Any], envelope: dict[str, Any], approval: bool = False) -> Reply:
    org = _validated(OrgSerializer, block.get("org"), "request.org")
    key = _required_key(envelope, "a run request")

    # 1. Validate everything the caller can fix before touching the database or LimaCharlie.
    raw, plan = loop.approval_request(block.get("data"), _validated) if approval else (block.get("data"), None)
    data = _validated(RunDataSerializer, raw, "request.data")
    config = _config(block, "request")
    inv_id = _inv_id(block)
    sender = _sender(data, config)
    recipients = _recipients(data["to"])
    if not data["body"].strip():
        raise EnvelopeError("request.data.body must be non-empty text")
    ack = _ack_plan(data, config, sender)
    refused = ack.escalate == "call" and delivery_services.call_request_refusal(
        recipients, sender, ack.ack_within_seconds
    )
    if refused:
        raise EnvelopeError(f"request.data.{refused}")  # e.g. a premium-rate number (docs/security.md)
    ack = replace(ack, codes=False) if plan else ack  # an approval's code is its own (services.approvals)
    code = "X" * delivery_services.ACK_CODE_LENGTH  # every code has the same length
    instruction = loop.approval_suffix(plan) if plan else ack_instruction(code) if ack.codes else ""
    body = prepare_body(data["body"], settings.SMS_MAX_BODY_CHARS, suffix=instruction)
    reference = _reference(data, config)
    remembered = _remembered(org["oid"], reference[0])

    # 2. A repeat of an accepted call gets the first reply and causes nothing, before any LimaCharlie
    # round trip.
    previous = delivery_services.alert_request_reply(oid=org["oid"], idempotency_key=key)
    if previous is not None:
        logger.info("repeat of idempotency key %s for org %s: answering with the first reply", key, org["oid"])
        return 200, reply(previous)

    # 3 to 5. The credential, persist, enqueue after commit, answer.
    fields = {
        "oid": org["oid"],
        "idempotency_key": key,
        "ident": org["ident"],
        "inv_id": inv_id,
        "from_number": sender,
        "recipients": recipients,
        "body": body,
        "ack": ack,
        "context": data["context"],
        "event_kinds": loop.event_kinds(config, "request"),
        "approval": plan,
    }
    return _accept(fields, jwt=org["jwt"], reference=reference, remembered=remembered)


def _remembered(oid: str, name: str) -> int | None:
    """The credential the secret `name` resolved to lately in this process (services.recall); None for a
    value pasted in place of a secret name, which is never kept."""
    return None if credentials.looks_resolved(name) else delivery_services.recall(oid=oid, reference=name)


def _accept(
    fields: dict[str, Any],
    *,
    jwt: str,
    reference: tuple[str, str],
    remembered: int | None,
) -> Reply:
    """Accept with the credential the secret resolved to lately (`remembered`, checked again as it is
    bound), or else read it from the Secrets Manager with this call's JWT."""
    oid, (name, field) = fields["oid"], reference
    if remembered is not None:
        try:
            return 200, reply(delivery_services.deliveries_accept(**fields, credential_id=remembered).reply)
        except delivery_services.CredentialGone:
            pass  # erased or refused since: read the secret again
    try:
        credential = credentials.fetch_twilio_credential(oid=oid, jwt=jwt, reference=name, field=field)
    except credentials.CredentialError as exc:
        return _credential_failure(exc)
    accepted = delivery_services.deliveries_accept(
        **fields,
        account_sid=credential.account_sid,
        auth_token=credential.auth_token,
        from_secrets_manager=not credentials.looks_resolved(name),  # only such a one checks inbound texts
    )
    # A value pasted in place of a secret name is never kept.
    if not credentials.looks_resolved(name) and accepted.credential_id is not None:
        delivery_services.remember(oid=oid, reference=name, credential_id=accepted.credential_id)
    return 200, reply(accepted.reply)


HANDLERS = {
    "heartbeat": heartbeat,
    "schema_request": schema_request,
    "conf_validation": conf_validation,
    "request": request,
    "event": event,
    "error_report": error_report,
}
