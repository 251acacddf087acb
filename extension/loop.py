"""What a rule and the configuration say about closing the loop in LimaCharlie: the `context` a rule
passes (echoed in every event of its alert), the event kinds the configuration chose, and the
parameters of `request_approval`."""

from __future__ import annotations

import json
from typing import Any

from rest_framework import serializers

from deliveries.services.approvals import ApprovalPlan, instruction
from deliveries.services.codes import LENGTH
from deliveries.services.events import DEFAULT_KINDS, KINDS
from extension.envelope import EnvelopeError
from extension.schema import (
    APPROVAL_CHOICES,
    APPROVAL_DEFAULT_TIMEOUT,
    APPROVAL_MAX_TIMEOUT,
    APPROVAL_MIN_TIMEOUT,
    CONFIG_EVENTS,
    CONTEXT_MAX_BYTES,
)


class ContextField(serializers.Field):
    """`context`: a JSON object or a string (a rendered template such as `{{ .routing.sid }}`), at most
    CONTEXT_MAX_BYTES as JSON: it is stored with the alert and sent in every event about it."""

    default_error_messages = {
        "invalid": "must be a JSON object or a string",
        "too_long": "is {size} bytes as JSON, more than the {limit} allowed",
    }

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict | str):
            self.fail("invalid")
        size = len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())
        if size > CONTEXT_MAX_BYTES:
            self.fail("too_long", size=size, limit=CONTEXT_MAX_BYTES)
        return data

    def to_representation(self, value: Any) -> Any:
        return value


def event_kinds(config: dict[str, Any], where: str) -> list[str]:
    """The configuration's `events`: a list of kinds, or one string separated by commas; absent, the
    default (every kind but `delivered`)."""
    value = config.get(CONFIG_EVENTS)
    if value is None or value == "":
        return list(DEFAULT_KINDS)
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(kind, str) for kind in value):
        raise EnvelopeError(f"{where}.config.{CONFIG_EVENTS} must be a list of event kinds")
    unknown = sorted(set(value) - set(KINDS))
    if unknown:
        raise EnvelopeError(
            f"{where}.config.{CONFIG_EVENTS}: {', '.join(unknown)} is not an event kind ({', '.join(KINDS)})"
        )
    return [kind for kind in KINDS if kind in value]


class ApprovalSerializer(serializers.Serializer):
    """What `request_approval` adds to `run`'s parameters (ext-feedback's `request_simple_approval`)."""

    question = serializers.CharField(trim_whitespace=True, error_messages={"blank": "must be non-empty text"})
    approved_content = ContextField(required=False, allow_null=True, default=None)
    denied_content = ContextField(required=False, allow_null=True, default=None)
    timeout_seconds = serializers.IntegerField(
        required=False, default=APPROVAL_DEFAULT_TIMEOUT, min_value=APPROVAL_MIN_TIMEOUT, max_value=APPROVAL_MAX_TIMEOUT
    )
    timeout_choice = serializers.ChoiceField(choices=APPROVAL_CHOICES, required=False, default="denied")

    def validate_question(self, value: Any) -> str:
        if not isinstance(self.initial_data.get("question"), str):
            raise serializers.ValidationError("must be text")
        return str(value)


def approval_request(data: Any, validated: Any) -> tuple[Any, ApprovalPlan]:
    """`request_approval`'s data as `run`'s (the question is the text), and its plan. `validated` is the
    intake's validation, so that an error names its field as every other one does."""
    fields = validated(ApprovalSerializer, data, "request.data")
    plan = ApprovalPlan(**fields)
    shaped = {k: v for k, v in data.items() if k not in fields} | {"body": plan.question}
    return shaped, plan


def approval_suffix(plan: ApprovalPlan) -> str:
    """The instruction after the question, with a stand-in code of the same length (for the text's size)."""
    return instruction(plan, "X" * LENGTH)
