"""The shapes of LimaCharlie's envelope and our reply, for the OpenAPI document only.

The intake does not parse with these (extension.envelope and extension.handlers do, field by field,
with protocol-shaped errors); they describe the wire format for a reader of /api/docs/.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample, inline_serializer
from rest_framework import serializers

from extension.envelope import PROTOCOL_VERSION, SIGNATURE_HEADER

_Org = inline_serializer(
    "Org",
    {
        "oid": serializers.CharField(help_text="The LimaCharlie organisation id."),
        "jwt": serializers.CharField(help_text="Short-lived token to read the org's Hive secrets; never stored."),
        "ident": serializers.CharField(required=False, help_text="Who asked, e.g. the D&R rule."),
    },
)

_RunData = inline_serializer(
    "RunData",
    {
        "body": serializers.CharField(help_text="The SMS text (capped at SMS_MAX_BODY_CHARS)."),
        "to": serializers.CharField(help_text="E.164 numbers, comma-separated."),
        "from": serializers.CharField(required=False, help_text="E.164 number or Messaging Service SID (MG…)."),
        "secret": serializers.CharField(required=False, help_text="Hive secret holding ACCOUNT_SID/AUTH_TOKEN."),
    },
)

_Request = inline_serializer(
    "RequestBlock",
    {
        "org": _Org,
        "action": serializers.ChoiceField(choices=["run"]),
        "data": _RunData,
        "config": serializers.DictField(required=False, help_text="The extension's configuration."),
        "inv_id": serializers.CharField(required=False),
    },
)

ENVELOPE = inline_serializer(
    "Envelope",
    {
        "version": serializers.IntegerField(help_text=f"Protocol version, {PROTOCOL_VERSION}."),
        "idempotency_key": serializers.CharField(help_text="Required for `request`; a repeat gets the first reply."),
        "heartbeat": serializers.DictField(required=False),
        "schema_request": serializers.DictField(required=False),
        "conf_validation": serializers.DictField(required=False),
        "request": _Request,
        "event": serializers.DictField(required=False),
        "error_report": serializers.DictField(required=False),
    },
)

REPLY = inline_serializer(
    "Reply",
    {
        "version": serializers.IntegerField(),
        "data": serializers.DictField(
            help_text="For `run`: `deliveries` (id, to, status), `segments`, `truncated`; for "
            "`schema_request`: the extension's schema."
        ),
        "error": serializers.CharField(required=False, help_text="Why the call was refused; never a secret."),
        "retriable": serializers.BooleanField(required=False),
    },
)

RUN_EXAMPLE = OpenApiExample(
    "run",
    summary="A D&R rule's `extension request` (shown before gzip)",
    request_only=True,
    value={
        "version": PROTOCOL_VERSION,
        "idempotency_key": "a3c9…",
        "request": {
            "org": {"oid": "8cbe27f4-…", "jwt": "eyJ…", "ident": "dr-general/ext-twilio-rule"},
            "action": "run",
            "data": {
                "body": "Detection: suspicious powershell on host-17",
                "to": "+15005550001",
                "from": "+15005550006",
            },
            "config": {},
            "inv_id": "inv-1",
        },
    },
)


class LimaCharlieSignatureScheme(OpenApiAuthenticationExtension):
    """Describes lc-ext-sig as a security scheme. Registered by being imported (extension.views does)."""

    target_class = "extension.authentication.LimaCharlieSignatureAuthentication"
    name = "lcExtSig"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": SIGNATURE_HEADER,
            "description": "Lower-case hex HMAC-SHA256 of the decompressed body, keyed by the Shared Secret.",
        }
