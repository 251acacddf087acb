"""Twilio's status callbacks: `POST /twilio/status/<delivery uuid>/`. Thin: the service checks the
signature and records the event."""

from __future__ import annotations

from uuid import UUID

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from deliveries import services


@csrf_exempt
@require_POST
def status_callback(request: HttpRequest, delivery_id: UUID) -> HttpResponse:
    # Twilio signs the URL it called. Behind a TLS-terminating proxy this process sees another
    # scheme/host, so the public URL is rebuilt from PUBLIC_BASE_URL when it is set.
    path = request.get_full_path()
    url = f"{settings.PUBLIC_BASE_URL}{path}" if settings.PUBLIC_BASE_URL else request.build_absolute_uri(path)
    result = services.status_callback_record(
        delivery_id=str(delivery_id),
        url=url,
        params={key: request.POST.get(key, "") for key in request.POST},
        signature=request.headers.get("X-Twilio-Signature", ""),
    )
    if result == services.CallbackResult.FORGED:
        return HttpResponse(status=403)
    # An unknown id still answers 200 with an empty TwiML-free body, so Twilio does not keep retrying.
    return HttpResponse(status=200)
