"""Operational endpoints: /healthz, /readyz and /metrics. Thin: the checks and the metrics live in
config.health and deliveries.observability.metrics."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from prometheus_client import CONTENT_TYPE_LATEST
from rest_framework import serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config import health
from config.state_metrics import DatabaseCollector
from deliveries.observability import metrics


class HealthView(APIView):
    """Liveness: the process answers. Touches nothing else, so a database outage never gets a healthy
    process restarted in a loop."""

    authentication_classes: list[type[BaseAuthentication]] = []
    permission_classes: list[type[BasePermission]] = []

    @extend_schema(
        summary="Liveness probe",
        description="200 while the process answers requests. Checks no dependency.",
        responses={200: inline_serializer("Health", {"status": serializers.CharField()})},
        tags=["operations"],
    )
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


_ReadyChecks = inline_serializer(
    "ReadyChecks", {"database": serializers.CharField(), "broker": serializers.CharField()}
)
_Ready = inline_serializer("Ready", {"status": serializers.CharField(), "checks": _ReadyChecks})


class ReadyView(APIView):
    """Readiness: the database and the broker are reachable. 503 names the one that is not."""

    authentication_classes: list[type[BaseAuthentication]] = []
    permission_classes: list[type[BasePermission]] = []

    @extend_schema(
        summary="Readiness probe",
        description=(
            "200 when the database answers `SELECT 1` and the Celery broker accepts a connection; "
            "503 otherwise, with `checks` saying which failed (by error class only)."
        ),
        responses={200: _Ready, 503: OpenApiResponse(_Ready, description="A dependency is unreachable.")},
        tags=["operations"],
    )
    def get(self, request: Request) -> Response:
        checks = [health.check_database(), health.check_broker()]
        ready = all(c.ok for c in checks)
        body = {"status": "ok" if ready else "unavailable", "checks": {c.name: c.detail for c in checks}}
        return Response(body, status=200 if ready else 503)


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition. A plain Django view, not DRF: Prometheus asks for text formats that a
    JSON API would refuse with 406. Open unless METRICS_TOKEN is set."""
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {token}"
        # compare_digest: the time taken must not tell a caller how much of the token was right.
        if not hmac.compare_digest(given.encode(), expected.encode()):
            response = HttpResponse(
                "metrics need Authorization: Bearer <METRICS_TOKEN>\n", status=401, content_type="text/plain"
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return HttpResponse(metrics.exposition(DatabaseCollector()), content_type=CONTENT_TYPE_LATEST)
