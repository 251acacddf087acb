"""The schema published in answer to `schema_request`: what LimaCharlie shows its users, and what it
lets a D&R rule send. The platform rejects parameters the schema does not declare, so every
parameter a rule may send is declared here."""

from __future__ import annotations

from typing import Any

CONFIG_TWILIO_SECRET = "twilio_secret"
CONFIG_DEFAULT_FROM = "default_from"
CONFIG_MESSAGING_SERVICE = "messaging_service_sid"


def _field(label: str, description: str, data_type: str, index: int, **extra: Any) -> dict[str, Any]:
    return {"label": label, "description": description, "data_type": data_type, "display_index": index, **extra}


def extension_schema() -> dict[str, Any]:
    return {
        "views": [{"name": "", "layout_type": "action", "default_requests": ["run"]}],
        "config_schema": {
            "fields": {
                CONFIG_TWILIO_SECRET: _field(
                    "Twilio credential",
                    "The secret in this organisation's Secrets Manager that holds your Twilio credential as "
                    "ACCOUNT_SID/AUTH_TOKEN (e.g. AC0123…/your-auth-token). Give its name or hive://secret/NAME.",
                    "string",
                    1,
                    placeholder="hive://secret/twilio",
                    default_value="hive://secret/twilio",
                ),
                CONFIG_DEFAULT_FROM: _field(
                    "Default sender",
                    "The Twilio number texts come from when a rule gives no 'from', in E.164 form (+14155550100).",
                    "string",
                    2,
                    placeholder="+14155550100",
                ),
                CONFIG_MESSAGING_SERVICE: _field(
                    "Messaging Service SID",
                    "Optional. Send through this Twilio Messaging Service (MG followed by 32 hex digits) when a "
                    "rule gives no 'from' and no default sender is set.",
                    "string",
                    3,
                    placeholder="MG0123456789abcdef0123456789abcdef",
                ),
            },
            "requirements": [],
        },
        "request_schema": {
            "run": {
                "is_user_facing": True,
                "label": "Send SMS",
                "short_description": "Text one or more people through your Twilio account.",
                "long_description": (
                    "Sends an SMS from a Twilio number to one or more phone numbers. Use it from a D&R rule "
                    "with 'action: extension request', 'extension action: run' and an 'extension request' "
                    "holding body, from and to. Every delivery is recorded and can be audited and resent."
                ),
                "is_impersonated": False,
                "parameters": {
                    "fields": {
                        "body": _field(
                            "Message",
                            "The text to send. Longer than 1,600 characters is cut with a visible marker.",
                            "string",
                            1,
                            placeholder="{{ .cat }} on {{ .routing.hostname }}",
                        ),
                        "from": _field(
                            "From",
                            "Your Twilio number in E.164 form (+14155550100) or a Messaging Service SID (MG…). "
                            "Optional when the extension's configuration has a default sender.",
                            "string",
                            2,
                            placeholder="+14155550100",
                        ),
                        "to": _field(
                            "To",
                            "The phone number to text, in E.164 form. Separate several numbers with commas.",
                            "string",
                            3,
                            placeholder="+14155550100,+14155550101",
                        ),
                        "secret": _field(
                            "Twilio credential (override)",
                            "Optional. A secret holding ACCOUNT_SID/AUTH_TOKEN to use instead of the configured one.",
                            "secret",
                            4,
                        ),
                    },
                    "requirements": [["body"], ["to"]],
                },
                "response": {
                    "fields": {
                        "deliveries": _field("Deliveries", "One entry per recipient: id, to and status.", "json", 1),
                    },
                    "requirements": [],
                },
            }
        },
        "required_events": ["subscribe", "unsubscribe", "update"],
    }
