"""The organisation's LimaCharlie webhook adapter, as a receiver of events: plain HTTPS with the
adapter's secret, no SDK and no JWT (LimaCharlie's webhook adapter documentation). Posts a JSON list;
never raises for an HTTP or network failure, it says what happened. The secret travels in the
`lc-secret` header, not in the URL, so it never reaches a proxy's or our own log of URLs."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import urllib3
from django.conf import settings

SECRET_HEADER = "lc-secret"
# The adapter's name: the extension's, as LimaCharlie's framework names it (extension.credentials).
ADAPTER_NAME = "ext-twilio"


@dataclass(frozen=True)
class HookResult:
    ok: bool
    http_status: int | None = None
    error: str = ""  # what went wrong, in words; never the secret


def hook_url(*, base: str, oid: str, adapter: str) -> str:
    """`<base>/<oid>/<adapter name>`: the adapter's endpoint with the secret left to the header."""
    return f"{base.rstrip('/')}/{quote(oid, safe='')}/{quote(adapter, safe='')}"


@lru_cache(maxsize=1)
def _pool(pid: int) -> urllib3.PoolManager:
    # One pool per process, shared by its threads; a forked process builds its own.
    return urllib3.PoolManager(num_pools=10, maxsize=4, retries=False)


def post_events(*, url: str, secret: str, events: list[dict[str, Any]]) -> HookResult:
    """POST the events as one JSON list. 2xx is accepted; anything else, or no answer, is not."""
    body = json.dumps(events, separators=(",", ":"), default=str).encode()
    seconds = settings.LC_HOOK_TIMEOUT_SECONDS
    try:
        answer = _pool(os.getpid()).request(
            "POST",
            url,
            body=body,
            headers={"Content-Type": "application/json", SECRET_HEADER: secret},
            timeout=urllib3.Timeout(connect=seconds, read=seconds),
        )
    except Exception as exc:  # noqa: BLE001 - every failure is an answer: the events wait for the next try
        return HookResult(ok=False, error=f"no answer from the hook ({type(exc).__name__})")
    if 200 <= answer.status < 300:
        return HookResult(ok=True, http_status=answer.status)
    return HookResult(ok=False, http_status=answer.status, error=f"the hook answered HTTP {answer.status}")
