"""The one status vocabulary: every status classified, and what the rest of the service derives."""

from __future__ import annotations

import pytest
from django.db import models

from deliveries import status as statuses
from deliveries.status import Status


def test_every_status_has_a_meaning() -> None:
    assert set(statuses.STATUSES) == set(Status)


def test_a_status_added_without_a_meaning_is_refused() -> None:
    class Grown(models.TextChoices):
        PENDING = "pending"
        PAUSED = "paused"

    with pytest.raises(RuntimeError, match="paused"):
        statuses.check_classified(Grown, statuses.STATUSES)


def test_the_derived_sets_are_the_documented_ones() -> None:
    assert {"delivered", "undelivered", "failed", "suppressed"} == statuses.FINAL
    assert {"pending", "sending"} == statuses.IN_FLIGHT
    assert set(Status) - {"pending", "sending"} == statuses.RESENDABLE
    assert {"queued", "accepted", "sent"} == statuses.AT_TWILIO_UNSETTLED


@pytest.mark.parametrize(
    ("twilio_status", "ours"),
    [
        ("queued", "queued"),
        ("sending", "queued"),
        ("accepted", "accepted"),
        ("scheduled", "accepted"),
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("read", "delivered"),
        ("undelivered", "undelivered"),
        ("failed", "failed"),
        ("canceled", "failed"),
        ("receiving", None),
    ],
)
def test_each_twilio_status_maps_onto_ours(twilio_status: str, ours: str | None) -> None:
    assert statuses.from_twilio(twilio_status) == ours


def test_a_status_only_moves_forward() -> None:
    assert statuses.moves_forward("sending", Status.QUEUED)
    assert statuses.moves_forward("ambiguous", Status.SENT)
    assert statuses.moves_forward("queued", Status.DELIVERED)
    assert not statuses.moves_forward("sent", Status.QUEUED)
    assert not statuses.moves_forward("queued", Status.ACCEPTED)
    assert not statuses.moves_forward("delivered", Status.UNDELIVERED)
    assert not statuses.moves_forward("suppressed", Status.DELIVERED)


def test_every_outcome_class_has_a_colour_and_every_status_a_class() -> None:
    assert set(statuses.CLASS_COLOURS) == set(statuses.OutcomeClass)
    assert {m.outcome_class for m in statuses.STATUSES.values()} == set(statuses.OutcomeClass)
