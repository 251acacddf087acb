"""Acknowledgement codes: short, easy to type on a phone, and unique among one recipient's
unacknowledged alerts of an organisation, so that a reply names exactly one alert. The replies that
carry them, and the limits that keep codes from being guessed, are services.inbound's."""

from __future__ import annotations

import secrets

from deliveries.models import Delivery

# No 0/O, 1/I/L: a code read off a lock screen is typed without confusion. All GSM-7: it never
# changes an alert's encoding. 31^4 = 923,521 codes per recipient (docs/security.md: the odds).
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
LENGTH = 4
# The lengths a reply's word may have to be tried as a code: 3 is the length codes had before, and
# alerts sent then may still be waiting for theirs.
CANDIDATE_LENGTHS = frozenset({3, LENGTH})
# A reply holding more candidates than this acknowledges nothing: a person types one code (two words
# can look like codes, as in "ok 4K7Q"); a long text of words would otherwise try hundreds at once.
MAX_CANDIDATES = 2


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
    """The distinct words of a reply that could be codes, in order ("ok 4k7q", "4K7Q!", "4K7Q")."""
    words = "".join(ch if ch.isalnum() else " " for ch in text.upper()).split()
    return [w for w in dict.fromkeys(words) if len(w) in CANDIDATE_LENGTHS and all(ch in ALPHABET for ch in w)]
