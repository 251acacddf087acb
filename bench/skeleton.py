"""Bench only: the skeleton, the end-to-end floor `make bench` compares the service with.

The same processes as `make run` (bin/run: gunicorn with deploy/gunicorn.conf.py at the web's nice, two
Celery workers of 32 threads, the same broker and Celery settings), with none of the service's own work:
the web checks the signature (as `/bench/bare/`), reads the recipient from the envelope and publishes a
Celery task as the service does (deliveries.services.queue); the task POSTs the message as the service
does, with its Twilio client (deliveries.twilio.client). No database, no Hive read (each organisation's
Twilio account is known in advance: a cache that never misses), no validation, no flood control, no
record of anything.

What it answers: how fast can any service be that takes alerts on this stack (Django and DRF in
gunicorn, one Celery task per alert, the Twilio SDK) on this machine, under issue 9's load? Whatever
the service adds to it is the service's; what the skeleton cannot do, no service built this way can.

Loaded by the bench's processes only (bench/settings.py: its URL, and CELERY_IMPORTS for the task).
The accounts come from BENCH_SKELETON_ACCOUNTS (JSON: oid -> [account SID, auth token]), set by
bench/e2e.py for this run's fake organisations.
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

from celery import shared_task
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from deliveries.services import queue
from deliveries.twilio import client as twilio
from extension.authentication import LimaCharlieSignatureAuthentication
from extension.envelope import reply

SKELETON_TASK = "bench.skeleton_send"


@cache
def _accounts() -> dict[str, tuple[str, str]]:
    return {oid: (sid, token) for oid, (sid, token) in json.loads(os.environ["BENCH_SKELETON_ACCOUNTS"]).items()}


class SkeletonView(APIView):
    """`/bench/skeleton/`: the bare endpoint (bench.urls.BareSignatureView), plus the one thing a
    service cannot skip: hand the alert to a worker."""

    authentication_classes = [LimaCharlieSignatureAuthentication]
    permission_classes: list[Any] = []
    parser_classes: list[Any] = []

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        if request.auth is None:
            return Response({})
        call = json.loads(request.auth)["request"]  # the verified, decompressed body
        data = call["data"]
        # The service's own publish (not apply_async): the hand-off costs here what it costs the service.
        queue._publish(SKELETON_TASK, (call["org"]["oid"], data["to"], data["from"], data["body"]), ignore_result=True)
        return Response(reply())


@shared_task(name=SKELETON_TASK, ignore_result=True)
def skeleton_send(oid: str, to: str, from_: str, body: str) -> None:
    """The POST as the service makes it, with its Twilio client (the SDK on urllib3's keep-alive pool,
    cheaper than the SDK's own requests session); nothing classified, nothing recorded."""
    sid, token = _accounts()[oid]
    twilio.rest_client(sid, token).messages.create(to=to, from_=from_, body=body, validity_period=3600)
