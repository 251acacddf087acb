"""The schema published in answer to `schema_request`: what LimaCharlie shows its users, and what it
lets a D&R rule send. The platform rejects parameters the schema does not declare, so every
parameter a rule may send is declared here."""

from __future__ import annotations

from typing import Any

CONFIG_TWILIO_SECRET = "twilio_secret"
CONFIG_DEFAULT_FROM = "default_from"
CONFIG_MESSAGING_SERVICE = "messaging_service_sid"
CONFIG_ACK_BY_REPLY = "ack_by_reply"
CONFIG_ACK_NOTIFY_OTHERS = "ack_notify_others"
CONFIG_EVENTS = "events"
ESCALATIONS = ("call", "next")
# The kinds of event sent to the organisation's LimaCharlie (deliveries.services.events.KINDS).
EVENT_KINDS = (
    "delivered",
    "undelivered",
    "failed",
    "acknowledged",
    "escalated",
    "unacknowledged",
    "approved",
    "denied",
)
CONTEXT_MAX_BYTES = 4096
APPROVAL_CHOICES = ("approved", "denied")
APPROVAL_MIN_TIMEOUT, APPROVAL_DEFAULT_TIMEOUT, APPROVAL_MAX_TIMEOUT = 60, 300, 86_400
ACK_WITHIN_MAX_MINUTES = 1440

# E.164 for LimaCharlie's forms (`filter.valid_re`; D&R rules are checked by the intake instead).
E164_RE = r"^\+[1-9][0-9]{6,14}$"
SENDER_RE = r"^(\+[1-9][0-9]{6,14}|MG[0-9a-fA-F]{32})$"


def _field(label: str, description: str, data_type: str, index: int, **extra: Any) -> dict[str, Any]:
    return {"label": label, "description": description, "data_type": data_type, "display_index": index, **extra}


def extension_schema() -> dict[str, Any]:
    return {
        "views": [{"name": "", "layout_type": "action", "default_requests": ["run"]}],
        "config_schema": _config_schema(),
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
                "parameters": _run_parameters(),
                "messages": {
                    "in_progress": "Recording the texts...",
                    "success": "Accepted: the texts are being sent. Follow them in the ext-twilio audit desk.",
                    "error": "The texts were not accepted.",
                },
                "response": _run_response(),
            },
            "request_approval": _approval_request(),
        },
        "required_events": ["subscribe", "unsubscribe", "update"],
    }


def _config_schema() -> dict[str, Any]:
    """The extension configuration an organisation fills in."""
    return {
        "fields": {
            CONFIG_TWILIO_SECRET: _field(
                "Twilio credential",
                "The secret in this organisation's Secrets Manager that holds your Twilio credential as "
                "ACCOUNT_SID/AUTH_TOKEN (e.g. AC0123…/your-auth-token). Give its name or hive://secret/NAME.",
                "secret",  # LimaCharlie's UI shows a picker of the organisation's secrets
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
                filter={"valid_re": E164_RE},
            ),
            CONFIG_MESSAGING_SERVICE: _field(
                "Messaging Service SID",
                "Optional. Send through this Twilio Messaging Service (MG followed by 32 hex digits) when a "
                "rule gives no 'from' and no default sender is set.",
                "string",
                3,
                placeholder="MG0123456789abcdef0123456789abcdef",
            ),
            **_config_outcome_fields(),
        },
        "requirements": [],
    }


def _config_outcome_fields() -> dict[str, Any]:
    """The configuration of what comes after a text: acknowledgement and events to LimaCharlie."""
    return {
        CONFIG_ACK_BY_REPLY: _field(
            "Acknowledge by reply",
            "Append 'Reply CODE to acknowledge' to every alert text (on by default). Wire the Twilio "
            "number's incoming-message webhook to this service's /twilio/inbound/<org id>/ URL.",
            "bool",
            4,
            default_value=True,
        ),
        CONFIG_ACK_NOTIFY_OTHERS: _field(
            "Tell the others",
            "When one recipient acknowledges, text the alert's other recipients 'acknowledged by ...'.",
            "bool",
            5,
            default_value=False,
        ),
        CONFIG_EVENTS: _field(
            "Events to LimaCharlie",
            "Which outcomes come back into this organisation as events of the ext-twilio webhook adapter, "
            "for D&R rules to act on (all but 'delivered' by default).",
            "enum",
            6,
            is_list=True,
            enum_values=list(EVENT_KINDS),
            default_value=[kind for kind in EVENT_KINDS if kind != "delivered"],
        ),
    }


def _run_parameters() -> dict[str, Any]:
    """What a D&R rule's `extension request` may hold."""
    return {
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
                filter={"valid_re": SENDER_RE},
            ),
            "to": _field(
                "To",
                "The phone numbers to text, in E.164 form: a list, or one string separated by commas.",
                "string",
                3,
                placeholder="+14155550100",
                is_list=True,
                filter={"valid_re": E164_RE},
            ),
            "secret": _field(
                "Twilio credential (override)",
                "Optional. A secret holding ACCOUNT_SID/AUTH_TOKEN to use instead of the configured one.",
                "secret",
                4,
            ),
            **_escalation_fields(),
            "context": _context_field(7),
        },
        "requirements": [["body"], ["to"]],
    }


def _escalation_fields() -> dict[str, Any]:
    """What happens when nobody acknowledges in time."""
    return {
        "ack_within": _field(
            "Acknowledge within (minutes)",
            "Optional. Minutes a recipient has to acknowledge before 'escalate' happens.",
            "integer",
            5,
            filter={"min": 1, "max": ACK_WITHIN_MAX_MINUTES},
        ),
        "escalate": _field(
            "Escalate",
            "With ack_within: 'call' phones the same recipient (press 1 to acknowledge); 'next' texts "
            "the recipients in 'to' one after another instead of all at once.",
            "enum",
            6,
            enum_values=list(ESCALATIONS),
        ),
    }


def _context_field(index: int) -> dict[str, Any]:
    return _field(
        "Context",
        "Optional. What the rule wants back in every event about this alert: an object or a string, e.g. "
        "{sid: '{{ .routing.sid }}', detect_id: '{{ .detect_id }}', hostname: '{{ .routing.hostname }}', "
        f"link: '{{{{ .link }}}}'}}. At most {CONTEXT_MAX_BYTES} bytes as JSON.",
        "json",
        index,
    )


def _run_response() -> dict[str, Any]:
    """What `run` answers, shown by LimaCharlie as a table of deliveries."""
    return {
        "fields": {
            "deliveries": _field(
                "Deliveries",
                "One entry per recipient texted now.",
                "object",
                1,
                is_list=True,
                object={
                    "fields": {
                        "id": _field("Delivery", "The delivery's id in the audit desk.", "string", 1),
                        "to": _field("To", "The recipient.", "string", 2),
                        "status": _field("Status", "pending when accepted.", "string", 3),
                        "ack_code": _field("Code", "What the recipient replies to acknowledge.", "string", 4),
                    },
                    "requirements": [],
                },
            ),
            "segments": _field("Segments", "SMS segments per text (what Twilio bills).", "integer", 2),
            "truncated": _field("Truncated", "Whether the body was cut to fit.", "bool", 3),
            "next": _field("Next", "With escalate: next, the recipients still to try.", "string", 4, is_list=True),
        },
        "requirements": [],
    }


def _approval_fields() -> dict[str, Any]:
    """`request_approval`'s parameters: ext-feedback's vocabulary, and `run`'s where they are the same."""
    run = _run_parameters()["fields"]
    minutes = APPROVAL_DEFAULT_TIMEOUT // 60
    fields = {
        "question": _field(
            "Question",
            "What to ask, e.g. 'Isolate {{ .routing.hostname }} from the network?'. The text adds "
            "'Reply CODE Y to approve or CODE N to deny.' and when the timeout decides.",
            "string",
            1,
        ),
        "from": {**run["from"], "display_index": 2},
        "to": {**run["to"], "display_index": 3, "description": "Who may answer, in E.164 form."},
        "approved_content": _field(
            "Approved content", "Optional JSON carried into the 'approved' event, for the rule that acts.", "json", 4
        ),
        "denied_content": _field("Denied content", "Optional JSON carried into the 'denied' event.", "json", 5),
        "timeout_seconds": _field(
            "Timeout (seconds)",
            f"Seconds before timeout_choice decides (at least {APPROVAL_MIN_TIMEOUT}; {minutes} minutes by default).",
            "integer",
            6,
            default_value=APPROVAL_DEFAULT_TIMEOUT,
            filter={"min": APPROVAL_MIN_TIMEOUT, "max": APPROVAL_MAX_TIMEOUT},
        ),
        "timeout_choice": _field(
            "Timeout choice",
            "What the timeout decides when nobody answers (denied by default).",
            "enum",
            7,
            enum_values=list(APPROVAL_CHOICES),
            default_value="denied",
        ),
        "secret": {**run["secret"], "display_index": 8},
        "ack_within": {**run["ack_within"], "display_index": 9, "label": "Answer within (minutes)"},
        "escalate": {
            **run["escalate"],
            "display_index": 10,
            "description": "With ack_within: 'call' phones the same people (press 1 to approve, 2 to deny); "
            "'next' asks the people in 'to' one after another.",
        },
        "context": _context_field(11),
    }
    return fields


def _approval_request() -> dict[str, Any]:
    """`request_approval`: ext-feedback's `request_simple_approval`, answered from a phone."""
    return {
        "is_user_facing": True,
        "label": "Request approval by SMS or call",
        "short_description": "Ask people by text (and call) to approve or deny, then act on the answer in a D&R rule.",
        "long_description": (
            "Texts the question to the people in 'to'; the first valid answer ('CODE Y' or 'CODE N', or 1 or 2 "
            "on a call) decides, or the timeout does. The decision comes back into this organisation as an "
            "'approved' or 'denied' event of the ext-twilio adapter, with its content and the context."
        ),
        "is_impersonated": False,
        "parameters": {"fields": _approval_fields(), "requirements": [["question"], ["to"]]},
        "messages": {
            "in_progress": "Asking...",
            "success": "Asked: the answer comes back as an 'approved' or 'denied' event.",
            "error": "The question was not sent.",
        },
        "response": None,
    }
