"""Twilio's webhooks. Thin: rebuild the URL Twilio signed, hand the form to a service, shape the answer."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.parsers import FormParser
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from deliveries import services

logger = logging.getLogger(__name__)
CALLBACK_MAX_BYTES = 65_536
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _content_length(request: Request) -> int:
    # Django reads no further than CONTENT_LENGTH, so the header bounds what the form parse would read.
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


_Callback = inline_serializer(
    "TwilioStatusCallback",
    {
        "MessageSid": serializers.CharField(),
        "MessageStatus": serializers.CharField(help_text="queued, sent, delivered, undelivered, failed, …"),
        "AccountSid": serializers.CharField(),
        "From": serializers.CharField(),
        "To": serializers.CharField(),
        "ErrorCode": serializers.CharField(required=False, help_text="On failed and undelivered."),
    },
)


def _refusal(request: Request) -> int | None:
    """413 or 400 for a webhook body no genuine Twilio request has, before anything is checked or stored."""
    # A webhook is a few hundred bytes. A larger body is refused before the form is read: Django would
    # refuse one over 2.5 MiB itself, but as an HTML 400 and a logged traceback.
    if _content_length(request) > CALLBACK_MAX_BYTES:
        logger.warning("refusing a Twilio webhook of %s bytes", request.META.get("CONTENT_LENGTH"))
        return 413
    if not all(_storable(key) and _storable(str(value)) for key, value in request.POST.items()):
        # Twilio never sends a NUL or a lone surrogate; neither can be stored (PostgreSQL refused the
        # row with a DataError: a 500 and a traceback).
        logger.warning("refusing a Twilio webhook whose form holds text that cannot be stored")
        return 400
    return None


def _signed(request: Request) -> dict[str, Any]:
    """The URL Twilio signed, the form and the signature. Behind a TLS-terminating proxy this process
    sees another scheme/host, so the public URL is rebuilt from PUBLIC_BASE_URL when it is set."""
    path = request.get_full_path()
    url = f"{settings.PUBLIC_BASE_URL}{path}" if settings.PUBLIC_BASE_URL else request.build_absolute_uri(path)
    return {
        "url": url,
        "params": {key: request.POST.get(key, "") for key in request.POST},
        "signature": request.headers.get("X-Twilio-Signature", ""),
    }


_SIGNATURE = OpenApiParameter(
    "X-Twilio-Signature",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description="base64 HMAC-SHA1 of the URL and the sorted form fields, keyed by the Auth Token.",
)


_TWIML_RESPONSES = {
    200: OpenApiResponse(description="TwiML"),
    400: OpenApiResponse(description="A form field holds a NUL or invalid text, or MessageSid (CallSid) is empty."),
    403: OpenApiResponse(description="Forged or unknown"),
    413: OpenApiResponse(description="A body over 64 KiB; nothing read or stored."),
}


class StatusCallbackView(APIView):
    authentication_classes: list[
        type[BaseAuthentication]
    ] = []  # X-Twilio-Signature is checked by the service, per account
    permission_classes: list[type[BasePermission]] = []
    parser_classes = [FormParser]

    @extend_schema(
        summary="Twilio message status callback",
        description="Twilio posts each status change of a message here (the URL carries our delivery id). "
        "Checked with X-Twilio-Signature over PUBLIC_BASE_URL + path; stored whole; statuses only move forward.",
        request={"application/x-www-form-urlencoded": _Callback},
        parameters=[
            OpenApiParameter(
                "X-Twilio-Signature",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=True,
                description="base64 HMAC-SHA1 of the URL and the sorted form fields, keyed by the Auth Token.",
            ),
        ],
        responses={
            200: OpenApiResponse(
                description="Stored; or a status recorded before, or an unknown delivery id (so Twilio stops "
                "retrying), which change nothing. An empty TwiML <Response/>."
            ),
            400: OpenApiResponse(description="A form field holds a NUL or invalid text; nothing stored."),
            403: OpenApiResponse(description="Missing or invalid X-Twilio-Signature; nothing stored."),
            413: OpenApiResponse(description="A body over 64 KiB; nothing read or stored."),
        },
        tags=["twilio"],
    )
    def post(self, request: Request, delivery_id: UUID) -> HttpResponse:
        refused = _refusal(request)
        if refused:
            return HttpResponse(status=refused)
        result = services.status_callback_record(delivery_id=str(delivery_id), **_signed(request))
        if result == services.CallbackResult.FORGED:
            return HttpResponse(status=403)
        # An unknown id still answers 200, so that Twilio does not keep retrying it; a duplicate too.
        return HttpResponse(EMPTY_TWIML, content_type="text/xml")


class _TwimlWebhook(APIView):
    """Twilio's webhooks that answer with TwiML. 403 when the signature is missing or wrong (or
    nothing can check it), and nothing is stored."""

    authentication_classes: list[type[BaseAuthentication]] = []  # X-Twilio-Signature, checked per account
    permission_classes: list[type[BasePermission]] = []
    parser_classes = [FormParser]

    def _refused(self, request: Request) -> HttpResponse | None:
        refused = _refusal(request)
        return HttpResponse(status=refused) if refused else None

    def _answer(self, answer: services.InboundAnswer) -> HttpResponse:
        if answer.result == services.WebhookResult.REFUSED:
            return HttpResponse(status=400)
        if answer.result not in (services.WebhookResult.STORED, services.WebhookResult.DUPLICATE):
            return HttpResponse(status=403)
        return HttpResponse(answer.twiml, content_type="text/xml")


class InboundMessageView(_TwimlWebhook):
    @extend_schema(
        summary="Twilio inbound message (a number's or Messaging Service's webhook)",
        description="A person's text to the organisation's Twilio number. Checked with X-Twilio-Signature and "
        "an Auth Token read from that organisation's Secrets Manager (for the AccountSid given; never one pasted "
        "into a rule); `To` must be a sender of its alerts; stored; STOP / START / HELP and acknowledgement codes "
        "are acted on, once per MessageSid (a repeat answers an empty <Response/>). Answers TwiML.",
        parameters=[_SIGNATURE],
        request={"application/x-www-form-urlencoded": OpenApiTypes.OBJECT},
        responses=_TWIML_RESPONSES,
        tags=["twilio"],
    )
    def post(self, request: Request, oid: str) -> HttpResponse:
        return self._refused(request) or self._answer(services.inbound_message_record(oid=oid, **_signed(request)))


class CallGatherView(_TwimlWebhook):
    @extend_schema(
        summary="Twilio <Gather> action of an escalation's call",
        description="The key pressed during the call. Digits=1 acknowledges the alert. Answers TwiML.",
        parameters=[_SIGNATURE],
        request={"application/x-www-form-urlencoded": OpenApiTypes.OBJECT},
        responses=_TWIML_RESPONSES,
        tags=["twilio"],
    )
    def post(self, request: Request, delivery_id: UUID) -> HttpResponse:
        refused = self._refused(request)
        return refused or self._answer(services.call_gather_record(delivery_id=str(delivery_id), **_signed(request)))
