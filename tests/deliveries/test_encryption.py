from __future__ import annotations

import io
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from deliveries.models import Credential, Organization

pytestmark = pytest.mark.django_db


def _stored_token(credential_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT auth_token FROM deliveries_credential WHERE id = %s", [credential_id])
        return cursor.fetchone()[0]


def test_a_rotated_key_still_reads_old_values_and_reencrypt_moves_them_to_the_new_key(settings: Any) -> None:
    old = settings.FIELD_ENCRYPTION_KEY
    org = Organization.objects.create(oid="org-1")
    credential = Credential.objects.create(
        organization=org, account_sid="AC" + "1" * 32, auth_token="tok-1", fingerprint="f", last_used_at=org.created_at
    )
    before = _stored_token(credential.id)

    new = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEY = f"{new},{old}"
    assert Credential.objects.get(id=credential.id).auth_token == "tok-1"

    out = io.StringIO()
    call_command("reencrypt_credentials", stdout=out)

    assert out.getvalue().strip() == "Re-encrypted 1 stored Twilio credentials."
    after = _stored_token(credential.id)
    assert after != before and Fernet(new.encode()).decrypt(after.encode()) == b"tok-1"
    settings.FIELD_ENCRYPTION_KEY = new  # the old key can go
    assert Credential.objects.get(id=credential.id).auth_token == "tok-1"
