"""The published schema uses LimaCharlie's own UI features, and only keys its framework knows
(refractionPOINT/lc-extension common/config_schema.go and request_schema.go: the JSON names of
SchemaObject, SchemaElement, Validator, RequestSchema and StatusMessages)."""

from __future__ import annotations

import re
from typing import Any

from extension.schema import extension_schema

OBJECT_KEYS = {"fields", "key", "element_name", "element_desc", "requirements", "supported_actions"}
ELEMENT_KEYS = {
    "label",
    "description",
    "placeholder",
    "data_type",
    "is_list",
    "display_index",
    "default_value",
    "object",
    "enum_values",
    "complex_enum_values",
    "filter",
}
FILTER_KEYS = {"whitelist", "blacklist", "valid_re", "invalid_re", "min", "max", "platforms"}
REQUEST_KEYS = {
    "is_default",
    "label",
    "is_user_facing",
    "short_description",
    "long_description",
    "messages",
    "is_impersonated",
    "parameters",
    "response",
}


def _check_object(obj: dict[str, Any], where: str) -> None:
    assert set(obj) <= OBJECT_KEYS, where
    for name, element in obj["fields"].items():
        assert set(element) <= ELEMENT_KEYS, f"{where}.{name}"
        assert set(element.get("filter", {})) <= FILTER_KEYS, f"{where}.{name}.filter"
        if "object" in element:
            _check_object(element["object"], f"{where}.{name}")


def test_the_schema_uses_only_keys_limacharlies_framework_knows() -> None:
    schema = extension_schema()
    _check_object(schema["config_schema"], "config")
    run = schema["request_schema"]["run"]
    assert set(run) <= REQUEST_KEYS
    assert set(run["messages"]) == {"in_progress", "success", "error"}
    _check_object(run["parameters"], "run.parameters")
    _check_object(run["response"], "run.response")


def test_the_ui_points_are_native() -> None:
    schema = extension_schema()
    config = schema["config_schema"]["fields"]
    run = schema["request_schema"]["run"]
    fields = run["parameters"]["fields"]
    assert config["twilio_secret"]["data_type"] == "secret"
    assert fields["to"]["is_list"] is True
    e164 = re.compile(fields["to"]["filter"]["valid_re"])
    assert e164.match("+14155550100") and not e164.match("4155550100") and not e164.match("+1 415 555")
    assert re.match(config["default_from"]["filter"]["valid_re"], "+14155550100")
    sender = re.compile(fields["from"]["filter"]["valid_re"])
    assert sender.match("+14155550100") and sender.match("MG" + "a" * 32) and not sender.match("Acme")
    deliveries = run["response"]["fields"]["deliveries"]
    assert (deliveries["data_type"], deliveries["is_list"]) == ("object", True)
    assert set(deliveries["object"]["fields"]) == {"id", "to", "status", "ack_code"}
    assert fields["ack_within"]["filter"] == {"min": 1, "max": 1440}
