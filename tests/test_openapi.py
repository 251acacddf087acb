"""The OpenAPI document is generated from the real views, validates, and describes the interface."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command

from tests.conftest import off_site_addresses


def test_the_schema_generates_without_warnings_and_validates(tmp_path: Path) -> None:
    out = tmp_path / "schema.yaml"
    # --fail-on-warn: a view the generator cannot describe (an unknown serializer or authenticator)
    # fails CI instead of silently dropping out of the document.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out), stderr=io.StringIO())
    schema = yaml.safe_load(out.read_text())

    assert {path: set(ops) for path, ops in schema["paths"].items()} == {
        "/extension/": {"post"},
        "/healthz": {"get"},
        "/readyz": {"get"},
        "/twilio/status/{delivery_id}/": {"post"},
        "/twilio/inbound/{oid}/": {"post"},
        "/twilio/voice/{delivery_id}/gather/": {"post"},
    }
    intake = schema["paths"]["/extension/"]["post"]
    assert set(intake["responses"]) == {"200", "400", "401", "413", "500"}
    assert "application/json" in intake["requestBody"]["content"]
    assert schema["components"]["securitySchemes"]["lcExtSig"] == {
        "type": "apiKey",
        "in": "header",
        "name": "lc-ext-sig",
        "description": "Lower-case hex HMAC-SHA256 of the decompressed body, keyed by the Shared Secret.",
    }
    assert set(schema["paths"]["/readyz"]["get"]["responses"]) == {"200", "503"}
    callback = schema["paths"]["/twilio/status/{delivery_id}/"]["post"]
    assert set(callback["responses"]) == {"200", "400", "403", "413"}
    assert "application/x-www-form-urlencoded" in callback["requestBody"]["content"]


def test_the_schema_is_served_at_api_schema(client: Any) -> None:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert "/extension/" in response.json()["paths"]


@pytest.mark.parametrize("path", ["/api/docs/"])
def test_the_browsable_page_loads_its_assets_locally(client: Any, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert off_site_addresses(page) == set()


def test_off_site_addresses_finds_a_cdn_script_and_ignores_a_token_that_spells_cdn() -> None:
    page = (
        '<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist/swagger-ui-bundle.js"></script>'
        '<link href="//unpkg.com/swagger-ui-dist/swagger-ui.css">'
        '<svg xmlns="http://www.w3.org/2000/svg"></svg>'
        '<input name="csrfmiddlewaretoken" value="szoecdn6xmy41arrpavrivpshng24onzdh01">'
        '<script src="/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"></script>'
    )
    assert off_site_addresses(page) == {"cdn.jsdelivr.net", "unpkg.com"}
