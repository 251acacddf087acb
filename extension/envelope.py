"""LimaCharlie's wire format: gzip, the `lc-ext-sig` HMAC, the envelope, and the reply shape."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import re
import zlib
from typing import Any

PROTOCOL_VERSION = 20221218
SIGNATURE_HEADER = "lc-ext-sig"
MESSAGE_TYPES = ("heartbeat", "schema_request", "conf_validation", "request", "event", "error_report")
# LimaCharlie's envelopes nest a few levels (a rule's data, the org's config); far below Python's
# recursion limit, so that nothing that walks a parsed value later can overflow the stack.
MAX_DEPTH = 32
MAX_KEY_CHARS = 255  # the column that stores it (AlertRequest.idempotency_key)


class EnvelopeError(Exception):
    """A request we refuse before acting on it. `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, retriable: bool = False) -> None:
        super().__init__(message)
        self.message, self.status, self.retriable = message, status, retriable


def sign(secret: str, body: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of the *decompressed* JSON bytes, keyed by the Shared Secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, signature: str) -> bool:
    # Bytes, not str: compare_digest refuses a str with non-ASCII characters (a TypeError, i.e. a 500
    # for anyone who sends one); a header that is not ASCII simply does not match.
    given = signature.strip().lower().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(sign(secret, body).encode(), given)


def raw_limit(limit: int) -> int:
    """The most wire bytes read for a body whose decompressed size may be `limit`: gzip of data that
    does not compress is a little larger than the data (5 bytes per 16 KiB block, plus its header)."""
    return limit + limit // 1000 + 1024


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
    if inflater.unused_data:
        # A second member or trailing bytes: LimaCharlie sends exactly one member; what follows it
        # would be signed-over data that a lenient reader and a strict one see differently.
        raise EnvelopeError("body has data after the end of its gzip stream")
    return body


# A JSON string, written so that a run of plain characters is one step (fast on a long string).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_OPENING = frozenset(b"[{")


def _nesting_within(body: bytes, limit: int) -> bool:
    """Whether the JSON nests at most `limit` levels, found without parsing it. json.loads recurses in C,
    and a body of 100,000 '[' ends in a RecursionError: catching that was the first fix, and the test
    suite then saw a later compile() in the same process fail with SystemError (CPython 3.11), so deep
    input is refused before json.loads ever sees it. Strings are dropped and only the brackets kept
    (both in C); the walk over the brackets stops at the first one too deep."""
    depth = 0
    for byte in _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
        depth += 1 if byte in _OPENING else -1
        if depth > limit:
            return False
    return True


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise EnvelopeError(f"body repeats the JSON key {_shown_key(key)}: each key may appear once")
        seen[key] = value
    return seen


def _shown_key(key: str) -> str:
    return repr(key) if len(key) <= 40 and key.isprintable() and key.isascii() else "(a key)"


def _check_values(envelope: dict[str, Any]) -> None:
    """One linear walk over everything parsed: no string may hold a NUL or a lone surrogate (neither can
    be stored: PostgreSQL refuses a NUL, UTF-8 a surrogate), and nothing may nest deeper than MAX_DEPTH."""
    stack: list[tuple[str, Any, int]] = [("", envelope, 0)]
    while stack:
        where, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise EnvelopeError(f"{where or 'body'} nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, str):
            _check_text(where, value)
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_text(f"{where} (a key)" if where else "a key", key)
                stack.append((f"{where}.{key}" if where else key, item, depth + 1))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item, depth + 1) for i, item in enumerate(value))


def _check_text(where: str, value: str) -> None:
    if "\x00" in value:
        raise EnvelopeError(f"{_field(where)} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise EnvelopeError(f"{_field(where)} contains a lone UTF-16 surrogate (not valid Unicode text)") from None


def _field(where: str) -> str:
    # A field path made of the caller's keys is shown only when it is short, printable ASCII.
    return where if len(where) <= 80 and where.isprintable() and where.isascii() else "a field"


def parse(body: bytes) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Return (message type, its block, the whole envelope). Unknown extra keys are ignored (newer
    platforms add blocks); repeated keys, NULs, lone surrogates and deep nesting are refused."""
    if not _nesting_within(body, MAX_DEPTH):
        raise EnvelopeError(f"body is not valid JSON or nests deeper than {MAX_DEPTH} levels")
    try:
        envelope = json.loads(body, object_pairs_hook=_refuse_duplicate_keys)
    except (ValueError, UnicodeDecodeError):
        raise EnvelopeError("body is not valid JSON") from None
    if not isinstance(envelope, dict):
        raise EnvelopeError("body must be a JSON object")
    _check_values(envelope)
    version = envelope.get("version")
    if type(version) is not int or version < 1:
        raise EnvelopeError(f"version must be a positive whole number (the protocol version, {PROTOCOL_VERSION})")
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
    if len(key) > MAX_KEY_CHARS:
        raise EnvelopeError(f"idempotency_key is longer than {MAX_KEY_CHARS} characters")
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
