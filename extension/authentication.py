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

from extension.envelope import SIGNATURE_HEADER, EnvelopeError, decompress, raw_limit, signature_matches

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
        secrets = [s for s in (settings.LC_SHARED_SECRET, settings.LC_SHARED_SECRET_PREVIOUS) if s]
        if not secrets:
            logger.error("refusing a signed LimaCharlie call: LC_SHARED_SECRET is not set")
            raise NotConfigured()
        body = decompress(_read_body(request), request.headers.get("Content-Encoding", ""), settings.LC_MAX_BODY_BYTES)
        # Every secret is tried (no early exit), so the time taken does not tell which one matched.
        matches = [signature_matches(secret, body, signature) for secret in secrets]
        if not any(matches):
            logger.warning("refusing a LimaCharlie call with a wrong %s", SIGNATURE_HEADER)
            raise exceptions.AuthenticationFailed(f"{SIGNATURE_HEADER} does not match the body")
        if not matches[0]:
            # During a rotation: LimaCharlie still signs with the old secret. Say so, so the operator
            # knows when LC_SHARED_SECRET_PREVIOUS can be dropped.
            logger.info("a LimaCharlie call was signed with LC_SHARED_SECRET_PREVIOUS")
        # The decompressed, verified bytes travel as request.auth so they are read exactly once.
        return LimaCharlieCaller(), body

    def authenticate_header(self, request: Request) -> str:
        # Non-empty, so DRF answers a failure with 401 rather than 403.
        return SIGNATURE_HEADER


def _read_body(request: Request) -> bytes:
    """The wire bytes, read from the stream with our own cap. Django's `request.body` would refuse
    anything over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB) with an exception the view cannot turn into a
    413, and would make an LC_MAX_BODY_BYTES above it unusable."""
    limit = raw_limit(settings.LC_MAX_BODY_BYTES)
    raw = request._request.read(limit + 1)
    if len(raw) > limit:
        raise EnvelopeError(f"body is larger than {limit} bytes", status=413)
    return raw
