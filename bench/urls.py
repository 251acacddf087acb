"""Bench only: the service's URLs (config.urls) plus `/bench/bare/`, the floor `make bench` compares the
intake with, and `/bench/skeleton/`, the end-to-end floor (bench/skeleton.py). Loaded through
bench/settings.py by the bench's gunicorn; production never serves it."""

from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bench.skeleton import SkeletonView
from config.urls import urlpatterns as service_urlpatterns
from extension.authentication import LimaCharlieSignatureAuthentication
from extension.envelope import reply


class BareSignatureView(APIView):
    """The same authentication as the intake (gunzip, lc-ext-sig HMAC) and a protocol reply, nothing
    else. Served by the same gunicorn as the intake, it is the floor `make bench` compares the intake
    with."""

    authentication_classes = [LimaCharlieSignatureAuthentication]
    permission_classes: list[Any] = []
    parser_classes: list[Any] = []

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        if request.auth is None:
            return Response({})
        return Response(reply())


urlpatterns = [
    *service_urlpatterns,
    path("bench/bare/", BareSignatureView.as_view(), name="bench-bare"),
    path("bench/skeleton/", SkeletonView.as_view(), name="bench-skeleton"),
]
