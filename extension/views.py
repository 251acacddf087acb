"""The intake: `POST /extension/`. Thin: authenticate, parse, dispatch to a handler, shape the reply."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, cast

from django.db import DatabaseError, DataError
from django.http import HttpRequest, HttpResponseBase
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import BasePermission
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from deliveries.observability import logcontext, metrics
from extension import handlers
from extension.authentication import LimaCharlieSignatureAuthentication
from extension.envelope import EnvelopeError, parse, reply
from extension.openapi import ENVELOPE, REPLY, RUN_EXAMPLE

logger = logging.getLogger(__name__)


class AlwaysJSON(BaseContentNegotiation):
    """The protocol's reply is JSON whatever the caller accepts (DRF's own example of a negotiation that
    ignores the client): no 406 to LimaCharlie, and no Accept header parsed on every call."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class IntakeView(APIView):
    authentication_classes = [LimaCharlieSignatureAuthentication]
    content_negotiation_class = AlwaysJSON
    permission_classes: list[type[BasePermission]] = []
    parser_classes: list[type[BaseParser]] = []  # the body is read, inflated and verified by the authentication class
    message_type = "-"  # set once the envelope is parsed; the metrics label of this call

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # A fresh log context per call: gunicorn reuses the thread for the next request.
        with logcontext.scope():
            response = super().dispatch(request, *args, **kwargs)
        metrics.intake_call(self.message_type, response.status_code)
        return response

    @extend_schema(
        operation_id="extension_call",
        summary="A call from LimaCharlie (extension protocol 20221218)",
        description=(
            "The body is the JSON envelope, gzipped (`Content-Encoding: gzip`), signed with the extension's "
            "Shared Secret: `lc-ext-sig` is the lower-case hex HMAC-SHA256 of the *decompressed* bytes. "
            "Exactly one message type is present. Without `lc-ext-sig` (e.g. a load-balancer probe) the "
            "answer is `200` with an empty reply and nothing happens. Every refusal keeps the reply shape, with `error` and "
            "`retriable`; LimaCharlie never retries a 4xx."
        ),
        request={"application/json": ENVELOPE},
        responses={
            200: OpenApiResponse(REPLY, description="Handled; for `run`, the deliveries it created."),
            400: OpenApiResponse(REPLY, description="Refused: malformed or invalid, names the field."),
            401: OpenApiResponse(REPLY, description="`lc-ext-sig` does not match the body."),
            413: OpenApiResponse(REPLY, description="Decompressed body over LC_MAX_BODY_BYTES."),
            500: OpenApiResponse(REPLY, description="Transient failure (`retriable: true`)."),
        },
        examples=[RUN_EXAMPLE],
        tags=["extension"],
    )
    def post(self, request: Request) -> Response:
        if request.auth is None:
            # No lc-ext-sig: not LimaCharlie (e.g. a probe). Nothing happens; the answer keeps the
            # reply shape the API document declares (LimaCharlie's SDKs answer `{}`, which no caller reads).
            self.message_type = "unsigned"
            return Response(reply())
        kind, block, envelope = parse(cast(bytes, request.auth))
        self.message_type = kind
        org = block.get("org")
        oid = org.get("oid") if isinstance(org, dict) else None
        logcontext.bind(
            # Only an oid that is one: any other value is the caller's text and stays out of the logs.
            oid=oid if isinstance(oid, str) and handlers.oid_valid(oid) else None,
            idempotency_key=envelope.get("idempotency_key") or None,
        )
        try:
            status, body = handlers.HANDLERS[kind](block, envelope)
        except DataError as exc:
            # A value the database cannot store (the envelope checks should have caught it): retrying
            # the same call cannot help, so it is refused, not reported as an outage.
            logger.warning("refusing a %s call: a value could not be stored (%s)", kind, type(exc).__name__)
            return Response(reply(error="a value in the call cannot be stored", retriable=False), status=400)
        except DatabaseError:
            logger.exception("database error handling a %s call", kind)
            return Response(reply(error="database unavailable, try again", retriable=True), status=500)
        return Response(body, status=status)

    def handle_exception(self, exc: Exception) -> Response:
        # Every refusal keeps the protocol's reply shape, so LimaCharlie shows the reason to its user.
        if isinstance(exc, EnvelopeError):
            return Response(reply(error=exc.message, retriable=exc.retriable), status=exc.status)
        if isinstance(exc, exceptions.APIException):
            retriable = exc.status_code >= 500
            response = Response(reply(error=str(exc.detail), retriable=retriable), status=exc.status_code)
            if isinstance(exc, exceptions.AuthenticationFailed):
                response["WWW-Authenticate"] = "lc-ext-sig"
            return response
        logger.exception("unexpected error in the intake")
        return Response(reply(error="internal error, try again", retriable=True), status=500)
