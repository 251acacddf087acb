"""Twilio credentials as `run` calls bring them. A delivery is bound to the credential it was accepted
with (see models.Credential); this module finds or stores that row, erases tokens when an organisation
leaves, and notes when Twilio refused one."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.crypto import salted_hmac

from deliveries.models import Credential, Organization

logger = logging.getLogger(__name__)

# How stale `last_used_at` may get: a burst of calls from one organisation must not each write the row.
LAST_USED_GRANULARITY = timedelta(seconds=60)


def fingerprint(account_sid: str, auth_token: str) -> str:
    """A keyed hash (SECRET_KEY) of the credential: equal credentials find one row, and the column
    says nothing about the token to whoever reads the database without the key."""
    return salted_hmac("ext-twilio.credential", f"{account_sid}/{auth_token}", algorithm="sha256").hexdigest()


def credential_for(
    *, organization: Organization, account_sid: str, auth_token: str, now: datetime, from_secrets_manager: bool = False
) -> Credential:
    """The organisation's row for this credential, stored (encrypted) the first time it is seen. Call it
    inside the transaction that stores the deliveries it is bound to. `from_secrets_manager`: read from
    the organisation's Secrets Manager with a JWT (not pasted inline into the rule); once true for a row
    it stays true, since the organisation itself holds that credential."""
    credential, created = Credential.objects.get_or_create(
        organization=organization,
        fingerprint=fingerprint(account_sid, auth_token),
        defaults={
            "account_sid": account_sid,
            "auth_token": auth_token,
            "last_used_at": now,
            "from_secrets_manager": from_secrets_manager,
        },
    )
    if created:
        logger.info("new Twilio credential for org %s: account %s", organization.oid, account_sid)
        return credential
    # Fresh from the Secrets Manager: a token erased at unsubscribe comes back, a refusal is forgotten.
    if (
        not credential.auth_token
        or credential.rejected_at
        or now - credential.last_used_at >= LAST_USED_GRANULARITY
        or (from_secrets_manager and not credential.from_secrets_manager)
    ):
        credential.auth_token, credential.rejected_at, credential.last_used_at = auth_token, None, now
        credential.from_secrets_manager = credential.from_secrets_manager or from_secrets_manager
        credential.save(update_fields=["auth_token", "rejected_at", "last_used_at", "from_secrets_manager"])
    return credential


def credentials_erase(*, organization: Organization) -> int:
    """The organisation unsubscribed: forget every token it gave us (the rows stay, for the audit)."""
    forget(oid=organization.oid)
    return Credential.objects.filter(organization=organization).exclude(auth_token="").update(auth_token="")


def credential_rejected(*, credential_id: int) -> None:
    """Twilio answered 20003 (authentication failed) with this credential."""
    Credential.objects.filter(id=credential_id, rejected_at__isnull=True).update(rejected_at=timezone.now())
    logger.warning("Twilio refused credential %s (20003); the next run call reads the secret again", credential_id)


def credentials_reencrypt() -> int:
    """Re-save every stored token, so it is encrypted with the first FIELD_ENCRYPTION_KEY and the
    old key can then be dropped."""
    count = 0
    for credential in Credential.objects.exclude(auth_token="").iterator():
        credential.save(update_fields=["auth_token"])
        count += 1
    return count


# --- which credential a secret held lately, per web process -------------------------------------------
#
# Reading the Secrets Manager is an HTTPS round trip to LimaCharlie on every `run` call (the SDK keeps no
# connection alive). For CREDENTIAL_CACHE_SECONDS (60 s) a web process remembers which stored credential
# an organisation's secret resolved to, and binds new deliveries to that row without asking again. Why
# 60 s: a burst of alerts reads the secret once a minute instead of once an alert, and a secret changed
# in LimaCharlie reaches new alerts within a minute. The row is re-checked in the accepting transaction,
# so a token erased at unsubscribe or refused by Twilio (20003) is never reused by any process: that
# call reads the secret again. Only ids are kept here, never a token.

_recent: dict[tuple[str, str], tuple[int, float]] = {}
_recent_lock = threading.Lock()


def recall(*, oid: str, reference: str) -> int | None:
    """The credential id this organisation's secret resolved to lately in this process, or None."""
    with _recent_lock:
        found = _recent.get((oid, reference))
    if found is None or time.monotonic() - found[1] >= settings.CREDENTIAL_CACHE_SECONDS:
        return None
    return found[0]


def remember(*, oid: str, reference: str, credential_id: int) -> None:
    if settings.CREDENTIAL_CACHE_SECONDS:
        with _recent_lock:
            _recent[(oid, reference)] = (credential_id, time.monotonic())


def forget(*, oid: str) -> None:
    """An `update` or `unsubscribe` event: the next call of this organisation reads its secret again."""
    with _recent_lock:
        for key in [k for k in _recent if k[0] == oid]:
            del _recent[key]


# A usable credential row (by id and organisation): the organisation's own, holding its token (an erased
# token is stored as "", which EncryptedTextField leaves as is, so no decryption), not refused by Twilio.
# A `run` call that reuses a remembered credential re-checks it with its other reads (services.accept).
# `organization`: a parameter (%s) or the organisation's id column of the enclosing query.
USABLE = "id = %s AND organization_id = {organization} AND rejected_at IS NULL AND auth_token <> ''"
