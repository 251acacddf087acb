"""Reading a Hive secret reuses one TLS context per process (building one costs ~40 ms of CPU)."""

from __future__ import annotations

import pytest

from extension import credentials
from tests.conftest import Tenant

pytestmark = pytest.mark.django_db


def test_each_hive_read_reuses_the_same_tls_context(tenant: Tenant) -> None:
    import limacharlie.client

    first = credentials.fetch_twilio_credential(oid=tenant.oid, jwt=tenant.jwt, reference="twilio")
    second = credentials.fetch_twilio_credential(oid=tenant.oid, jwt=tenant.jwt, reference="twilio")

    assert first == second == credentials.TwilioCredential(tenant.account_sid, tenant.auth_token)
    a = limacharlie.client.Client(oid=tenant.oid, jwt=tenant.jwt)
    b = limacharlie.client.Client(oid=tenant.oid, jwt=tenant.jwt)
    assert a._ssl_context is not None and a._ssl_context is b._ssl_context
