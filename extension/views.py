"""The intake: `POST /extension/`. Thin: authenticate, parse, dispatch to a handler, shape the reply."""

from __future__ import annotations

import logging
from typing import Any, cast

from django.db import DatabaseError
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from extension import handlers
from extension.authentication import LimaCharlieSignatureAuthentication
from extension.envelope import EnvelopeError, parse, reply

logger = logging.getLogger(__name__)


class IntakeView(APIView):
    authentication_classes = [LimaCharlieSignatureAuthentication]
    permission_classes: list[Any] = []
    parser_classes: list[Any] = []  # the body is read, inflated and verified by the authentication class

    def post(self, request: Request) -> Response:
        if request.auth is None:
            # No lc-ext-sig: not LimaCharlie (e.g. a probe). The SDKs answer 200 {} and do nothing.
            return Response({})
        kind, block, envelope = parse(cast(bytes, request.auth))
        try:
            status, body = handlers.HANDLERS[kind](block, envelope)
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
