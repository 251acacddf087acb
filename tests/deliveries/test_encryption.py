from __future__ import annotations

import io
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from deliveries.models import Organization

pytestmark = pytest.mark.django_db


def _stored_token(oid: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT twilio_auth_token FROM deliveries_organization WHERE oid = %s", [oid])
        return cursor.fetchone()[0]


def test_a_rotated_key_still_reads_old_values_and_reencrypt_moves_them_to_the_new_key(settings: Any) -> None:
    old = settings.FIELD_ENCRYPTION_KEY
    Organization.objects.create(oid="org-1", twilio_account_sid="AC" + "1" * 32, twilio_auth_token="tok-1")
    before = _stored_token("org-1")

    new = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEY = f"{new},{old}"
    assert Organization.objects.get(oid="org-1").twilio_auth_token == "tok-1"

    out = io.StringIO()
    call_command("reencrypt_credentials", stdout=out)

    assert out.getvalue().strip() == "Re-encrypted the credentials of 1 organisations."
    after = _stored_token("org-1")
    assert after != before and Fernet(new.encode()).decrypt(after.encode()) == b"tok-1"
    settings.FIELD_ENCRYPTION_KEY = new  # the old key can go
    assert Organization.objects.get(oid="org-1").twilio_auth_token == "tok-1"
