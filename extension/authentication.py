"""`lc-ext-sig` as a DRF authentication class.

Order matters and follows LimaCharlie's SDKs: no header means the call is not from LimaCharlie
(a load-balancer probe) and is answered `200 {}` by the view; the body is decompressed (capped)
before the HMAC because the signature covers the JSON bytes, not the gzip bytes.
"""

from __future__ import annotations

import logging

from django.conf import settings
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from extension.envelope import SIGNATURE_HEADER, decompress, signature_matches

logger = logging.getLogger(__name__)


class LimaCharlieCaller:
    """The authenticated principal: whoever holds the Shared Secret."""

    is_authenticated = True


class NotConfigured(exceptions.APIException):
    status_code = 500
    default_detail = "the extension has no shared secret configured"


class LimaCharlieSignatureAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[LimaCharlieCaller, bytes] | None:
        signature = request.headers.get(SIGNATURE_HEADER)
        if signature is None:
            return None
        secret = settings.LC_SHARED_SECRET
        if not secret:
            logger.error("refusing a signed LimaCharlie call: LC_SHARED_SECRET is not set")
            raise NotConfigured()
        body = decompress(
            request._request.body, request.headers.get("Content-Encoding", ""), settings.LC_MAX_BODY_BYTES
        )
        if not signature_matches(secret, body, signature):
            logger.warning("refusing a LimaCharlie call with a wrong %s", SIGNATURE_HEADER)
            raise exceptions.AuthenticationFailed(f"{SIGNATURE_HEADER} does not match the body")
        # The decompressed, verified bytes travel as request.auth so they are read exactly once.
        return LimaCharlieCaller(), body

    def authenticate_header(self, request: Request) -> str:
        # Non-empty, so DRF answers a failure with 401 rather than 403.
        return SIGNATURE_HEADER
