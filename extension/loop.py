"""What a rule and the configuration say about closing the loop in LimaCharlie: the `context` a rule
passes (echoed in every event of its alert), and the event kinds the configuration chose."""

from __future__ import annotations

import json
from typing import Any

from rest_framework import serializers

from deliveries.services.events import DEFAULT_KINDS, KINDS
from extension.envelope import EnvelopeError
from extension.schema import CONFIG_EVENTS, CONTEXT_MAX_BYTES


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
