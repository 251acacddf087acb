"""request_approval at the intake: its parameters checked by name, its schema, and a decision that can
be won only once (an answer against the timeout)."""

from __future__ import annotations

from typing import Any

import pytest

from deliveries.models import Approval, OutboundEvent
from deliveries.services import approvals
from tests.conftest import Intake, Tenant, run_block

pytestmark = pytest.mark.django_db


def _ask(intake: Intake, tenant: Tenant, **data: Any) -> Any:
    block = run_block(tenant, body=None, **data)
    block["action"] = "request_approval"
    return intake.send("request", block)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({}, "request.data.question: This field is required."),
        ({"question": "   "}, "request.data.question: must be non-empty text"),
        (
            {"question": "Isolate?", "timeout_seconds": 30},
            "request.data.timeout_seconds: Ensure this value is greater than or equal to 60.",
        ),
        (
            {"question": "Isolate?", "timeout_choice": "maybe"},
            'request.data.timeout_choice: "maybe" is not a valid choice.',
        ),
        (
            {"question": "Isolate?", "approved_content": [1]},
            "request.data.approved_content: must be a JSON object or a string",
        ),
    ],
)
def test_a_bad_parameter_is_refused_by_name(intake: Intake, tenant: Tenant, data: dict[str, Any], error: str) -> None:
    response = _ask(intake, tenant, **data)

    assert (response.status_code, response.json()["error"]) == (400, error)
    assert not Approval.objects.exists()


def test_the_answer_and_the_timeout_cannot_both_win(intake: Intake, tenant: Tenant) -> None:
    assert _ask(intake, tenant, question="Isolate ws-180?").status_code == 200
    approval = Approval.objects.get()

    first, _ = approvals.approval_decide(
        approval_id=approval.pk, decision="approved", by=tenant.recipient, channel="sms"
    )
    second, decided = approvals.approval_decide(
        approval_id=approval.pk, decision="denied", by="timeout", channel="timeout"
    )

    assert (first, second) == (True, False)
    assert (decided.decision, decided.decided_by) == ("approved", tenant.recipient)
    assert list(OutboundEvent.objects.values_list("kind", flat=True)) == ["approved"]


def test_the_schema_declares_request_approval_in_ext_feedbacks_words(intake: Intake) -> None:
    schema = intake.send("schema_request", {}).json()["data"]["request_schema"]["request_approval"]

    fields = schema["parameters"]["fields"]
    assert {
        "question",
        "to",
        "from",
        "approved_content",
        "denied_content",
        "timeout_seconds",
        "timeout_choice",
        "context",
        "escalate",
        "ack_within",
        "secret",
    } == set(fields)
    assert fields["timeout_seconds"]["filter"]["min"] == 60
    assert fields["timeout_choice"]["enum_values"] == ["approved", "denied"]
    assert schema["parameters"]["requirements"] == [["question"], ["to"]] and set(schema["messages"]) == {
        "in_progress",
        "success",
        "error",
    }
