"""The loop's tests call people: their recipient is an ordinary phone (the tenant's usual +1 500 number
is a personal, forwarding number, which calls refuse), and a call may follow a few seconds' wait."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tests.conftest import Tenant

CALLABLE = "+14155550101"


@pytest.fixture
def tenant(tenant: Tenant) -> Tenant:
    return replace(tenant, recipient=CALLABLE)


@pytest.fixture(autouse=True)
def quick_calls(settings: Any) -> None:
    # A call needs ack_within of a minute or more (CALL_MIN_ACK_WITHIN_SECONDS); the intake runs in the
    # tests' process, so they lower it to keep the same countdown path to seconds.
    settings.CALL_MIN_ACK_WITHIN_SECONDS = 0
