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


def test_a_timeout_longer_than_a_countdown_may_wait_is_decided_by_the_sweeper_when_due(
    intake: Intake, tenant: Tenant, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No countdown longer than half the broker's visibility timeout: Redis would redeliver it meanwhile."""
    from datetime import timedelta

    from django.utils import timezone

    from deliveries.services import queue

    armed: list[tuple[list[int], float | None]] = []
    monkeypatch.setattr(queue, "approval_timeout", lambda ids, countdown=None: armed.append((ids, countdown)))
    settings.BROKER_VISIBILITY_TIMEOUT_SECONDS = 600
    assert _ask(intake, tenant, question="Isolate ws-180?", timeout_seconds=3600).status_code == 200
    assert armed == []  # an hour: no task waits that long in the broker

    approval = Approval.objects.get()
    assert approvals.approvals_sweep(now=timezone.now()) == 0  # not due yet: nothing to decide
    assert armed == [] and Approval.objects.get().decided_at is None
    later = approval.due_at + timedelta(seconds=1)
    approvals.approvals_sweep(now=later)
    assert armed == [([approval.pk], None)]  # due: its timeout task, now


def test_a_short_timeout_is_one_countdown(
    intake: Intake, tenant: Tenant, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deliveries.services import queue

    armed: list[tuple[list[int], float | None]] = []
    monkeypatch.setattr(queue, "approval_timeout", lambda ids, countdown=None: armed.append((ids, countdown)))
    assert _ask(intake, tenant, question="Isolate ws-180?", timeout_seconds=300).status_code == 200

    assert armed == [([Approval.objects.get().pk], 300)]
