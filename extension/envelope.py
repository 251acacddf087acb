"""LimaCharlie's wire format: gzip, the `lc-ext-sig` HMAC, the envelope, and the reply shape."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import zlib
from typing import Any

PROTOCOL_VERSION = 20221218
SIGNATURE_HEADER = "lc-ext-sig"
MESSAGE_TYPES = ("heartbeat", "schema_request", "conf_validation", "request", "event", "error_report")


class EnvelopeError(Exception):
    """A request we refuse before acting on it. `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, retriable: bool = False) -> None:
        super().__init__(message)
        self.message, self.status, self.retriable = message, status, retriable


def sign(secret: str, body: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of the *decompressed* JSON bytes, keyed by the Shared Secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, body), signature.strip().lower())


def decompress(raw: bytes, content_encoding: str, limit: int) -> bytes:
    """Gunzip (if the body says gzip) without ever holding more than `limit` + 1 bytes, so a small
    gzip bomb cannot exhaust memory before the signature has even been checked."""
    if "gzip" not in content_encoding.lower():
        if len(raw) > limit:
            raise EnvelopeError(f"body is larger than {limit} bytes", status=413)
        return raw
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error:
        raise EnvelopeError("body is not valid gzip although Content-Encoding says gzip") from None
    if len(body) > limit:
        raise EnvelopeError(f"decompressed body is larger than {limit} bytes", status=413)
    if not inflater.eof:
        raise EnvelopeError("body is truncated gzip")
    return body


def parse(body: bytes) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Return (message type, its block, the whole envelope). Unknown extra keys are ignored:
    newer platforms add blocks."""
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise EnvelopeError("body is not valid JSON") from None
    if not isinstance(envelope, dict):
        raise EnvelopeError("body must be a JSON object")
    present = [name for name in MESSAGE_TYPES if envelope.get(name) is not None]
    if not present:
        raise EnvelopeError(f"no message type: expected one of {', '.join(MESSAGE_TYPES)}")
    if len(present) > 1:
        raise EnvelopeError(f"more than one message type: {', '.join(present)}")
    kind = present[0]
    block = envelope[kind]
    if not isinstance(block, dict):
        raise EnvelopeError(f"{kind} must be a JSON object")
    key = envelope.get("idempotency_key", "")
    if not isinstance(key, str):
        raise EnvelopeError("idempotency_key must be a string")
    return kind, block, envelope


def reply(data: dict[str, Any] | None = None, error: str = "", retriable: bool | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"version": PROTOCOL_VERSION, "data": data or {}}
    if error:
        out["error"] = error
        out["retriable"] = bool(retriable)
    return out


def build(message_type: str, block: dict[str, Any], idempotency_key: str) -> bytes:
    """An envelope as LimaCharlie serialises it (compact JSON). Used by `lc_request` and the tests."""
    envelope = {"version": PROTOCOL_VERSION, "idempotency_key": idempotency_key, message_type: block}
    return json.dumps(envelope, separators=(",", ":")).encode()


def gzip_bytes(body: bytes) -> bytes:
    return gzip.compress(body)
