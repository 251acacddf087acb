"""Acknowledgement codes: short, easy to type on a phone, and unique among one recipient's
unacknowledged alerts of an organisation, so that a reply names exactly one alert."""

from __future__ import annotations

import secrets

from deliveries.models import Delivery

# No 0/O, 1/I/L: a code read off a lock screen is typed without confusion. All GSM-7: it never
# changes an alert's encoding. 31^3 = 29,791 codes per recipient.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
LENGTH = 3


def ack_code_new(*, organization_id: int, recipient: str, taken: set[str] | None = None) -> str:
    """A code no unacknowledged alert of this recipient (in this organisation) holds, nor any of `taken`."""
    outstanding = (
        Delivery.objects.filter(organization_id=organization_id, to_number=recipient, acknowledged_at__isnull=True)
        .exclude(ack_code="")
        .values_list("ack_code", flat=True)
    )
    used = set(outstanding) | (taken or set())
    while True:
        code = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        if code not in used:
            return code


def codes_in(text: str) -> list[str]:
    """The words of a reply that could be codes, in order ("ack 4k7", "4K7!", "4K7")."""
    words = "".join(ch if ch.isalnum() else " " for ch in text.upper()).split()
    return [w for w in words if len(w) == LENGTH and all(ch in ALPHABET for ch in w)]
