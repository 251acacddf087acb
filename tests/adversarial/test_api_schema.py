"""Schemathesis against the service's own OpenAPI document: every operation, generated calls that
follow the document (positive) and calls that break it (negative). The intake's calls are signed and
gzipped as LimaCharlie sends them (most of them: some stay unsigned or wrongly signed), and half of
them carry a real organisation; Twilio's status callbacks are signed as Twilio signs them, half for a
delivery that exists. Whatever arrives: no 5xx, no answer that breaks the document, nothing sent to
Twilio for a call that was refused.

`make test` runs ADVERSARIAL_EXAMPLES (default 60) per operation and mode; `make fuzz` many more."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from collections import Counter
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.transport import Response
from schemathesis.openapi import from_dict
from schemathesis.specs.openapi.checks import response_schema_conformance
from twilio.request_validator import RequestValidator

from extension.envelope import SIGNATURE_HEADER, sign
from tests.conftest import Tenant, make_delivery
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db
EXAMPLES = int(os.environ.get("ADVERSARIAL_EXAMPLES", "60"))
SETTINGS = hsettings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
PUBLIC = "https://sms.example.com"

_DOCUMENT = json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))
SCHEMA = from_dict(_DOCUMENT)
# Every operation with data that follows the document; those that take input also with data that breaks it
# (an operation without parameters or body has no negative case).
_OPERATIONS = [cast(Any, result).ok() for result in SCHEMA.get_all_operations()]
CASES = [
    (op.method.upper(), op.path, mode)
    for op in _OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or op.body or list(op.iter_parameters())
]


def _pick(*parts: Any) -> int:
    """A stable choice from the generated data, so a failing example replays the same way."""
    return hashlib.sha256(repr(parts).encode()).digest()[0]


def _intake_body(kwargs: dict[str, Any], tenant: Tenant) -> bytes:
    if "json" in kwargs:
        value = kwargs.pop("json")
        if isinstance(value, dict) and isinstance(value.get("request"), dict) and _pick(value) % 2:
            # A real organisation with its real JWT: the call reaches the credential read and beyond.
            org = value["request"].get("org")
            value["request"]["org"] = {**(org if isinstance(org, dict) else {}), "oid": tenant.oid, "jwt": tenant.jwt}
        return json.dumps(value).encode()
    data = kwargs.pop("data", b"")
    return data.encode() if isinstance(data, str) else bytes(data or b"")


def _send(
    client: Client, kwargs: dict[str, Any], tenant: Tenant, delivery_id: str
) -> tuple[Any, dict[str, str], bytes]:
    """Sign the call as its real sender would, send it through Django's test client."""
    # The keyword arguments of `requests` (the transport Schemathesis serialises for).
    method, path = kwargs.pop("method").upper(), urlsplit(kwargs.pop("url")).path
    headers = {k: str(v) for k, v in (kwargs.pop("headers", None) or {}).items()}
    query = kwargs.pop("params", None) or {}
    if path == "/extension/":
        body = _intake_body(kwargs, tenant)
        choice = _pick(body) % 8
        if choice < 6:  # signed and gzipped, as LimaCharlie sends every call
            headers[SIGNATURE_HEADER] = sign(tenant_secret(), body)
            headers["Content-Encoding"] = "gzip"
            wire = gzip.compress(body)
        else:  # unsigned, or signed with whatever was generated
            if choice == 6:
                headers.pop(SIGNATURE_HEADER, None)
            wire = body
    elif path.startswith("/twilio/status/"):
        form = kwargs.pop("data", None) or {}
        params = {str(k): str(v) for k, v in (form.items() if isinstance(form, dict) else parse_qsl(str(form)))}
        if _pick(params) % 2:
            path = f"/twilio/status/{delivery_id}/"
        wire = urlencode(params).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        if _pick(params, "sign") % 4:
            headers["X-Twilio-Signature"] = RequestValidator(tenant.auth_token).compute_signature(PUBLIC + path, params)
    else:
        wire = b""
    if query:
        path = f"{path}?{urlencode(query, doseq=True)}"
    content_type = headers.pop("Content-Type", "application/json")
    sent_headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
    if method == "GET":
        response = client.get(path, headers=sent_headers)
    else:
        response = client.generic(method, path, data=wire, content_type=content_type, headers=sent_headers)
    return response, {"method": method, "path": path, "content_type": content_type, **headers}, wire


def tenant_secret() -> str:
    from django.conf import settings

    return str(settings.LC_SHARED_SECRET)


def _as_schemathesis_response(response: Any, sent: dict[str, str], wire: bytes) -> Response:
    prepared = requests.Request(sent["method"], "http://testserver" + sent["path"], data=wire).prepare()
    return Response(
        status_code=response.status_code,
        headers={k: [v] for k, v in response.headers.items()},
        content=b"".join(response.streaming_content) if response.streaming else response.content,
        request=prepared,
        elapsed=0.0,
        verify=False,
    )


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES])
def test_generated_calls_get_no_5xx_and_no_answer_outside_the_document(
    client: Client, settings: Any, tenant: Tenant, fake_twilio: FakeTwilio, method: str, path: str, mode: GenerationMode
) -> None:
    settings.PUBLIC_BASE_URL = PUBLIC
    settings.ALLOWED_HOSTS = ["testserver", "sms.example.com"]
    delivery = make_delivery(tenant, twilio_sid="SM" + "a" * 32)
    operation = SCHEMA[path][method]
    seen: list[int] = []

    @SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        kwargs = case.as_transport_kwargs(base_url="http://testserver")
        posts_before = len(fake_twilio.posts())
        response, sent, wire = _send(client, kwargs, tenant, str(delivery.id))
        seen.append(response.status_code)
        assert response.status_code < 500, (response.status_code, response.content[:500], sent)
        case.validate_response(
            _as_schemathesis_response(response, sent, wire), checks=[not_a_server_error, response_schema_conformance]
        )
        if response.status_code != 200:
            assert len(fake_twilio.posts()) == posts_before, "a refused call sent a text"

    started = time.monotonic()
    run()
    assert seen, "nothing was generated"
    counts = dict(sorted(Counter(seen).items()))
    print(f"{method} {path} [{mode.value}]: {len(seen)} calls in {time.monotonic() - started:.1f} s, statuses {counts}")  # noqa: T201 - shown with -s
