"""Bench only: the synchronous baseline `make bench` compares the service with.

What LimaCharlie's extension framework suggests for an SMS extension: `lcextension` (its Python
reference implementation, a Flask app that checks `lc-ext-sig`, gunzips and dispatches the envelope),
served by gunicorn with 4 sync workers, whose `run` handler reads the organisation's Twilio credential
from Hive with the call's JWT (the `limacharlie` SDK) and POSTs the message with the Twilio SDK inside
the request, answering only when Twilio has.

    LC_SHARED_SECRET=... LC_API_URL=http://127.0.0.1:PORT TWILIO_API_BASE_URL=http://127.0.0.1:PORT \\
        .venv/bin/gunicorn bench.baseline:app --workers 4 --bind 127.0.0.1:PORT

One shim, and nothing else of lcextension changed: lcextension 1.1.10 (the newest) was written for
`limacharlie` 4.x and names `limacharlie.Manager` / `limacharlie.WebhookSender` in its method
signatures, which `limacharlie` 5.x (the service's pin) no longer has, so `import lcextension` fails
with an AttributeError. Before importing it, `limacharlie.Manager` is given a stand-in that holds the
call's oid and JWT (all that lcextension's dispatcher does with it: `Manager(oid=..., jwt=...)`), and
the handler reads Hive through the 5.x SDK the way `extension/credentials.py` does, without its
TLS-context reuse (the obvious way). No retry, no idempotency, no record: that is the baseline.
"""

from __future__ import annotations

import os
from typing import Any

import limacharlie

os.environ.setdefault("LC_EPHEMERAL_CREDS", "1")  # never read or write ~/.limacharlie


class _Manager:
    """Stand-in for limacharlie 4.x's `Manager(oid=..., jwt=...)`, which lcextension builds per call."""

    def __init__(self, oid: str | None = None, jwt: str | None = None, **_: Any) -> None:
        self._oid, self._jwt = oid or "", jwt or ""


for _name in ("Manager", "WebhookSender"):
    if not hasattr(limacharlie, _name):
        setattr(limacharlie, _name, _Manager)

import lcextension  # noqa: E402 - after the shim above
from limacharlie.client import Client  # noqa: E402
from limacharlie.sdk.hive import Hive  # noqa: E402
from limacharlie.sdk.organization import Organization  # noqa: E402
from twilio.rest import Client as TwilioClient  # noqa: E402

TWILIO_API_BASE_URL = os.environ.get("TWILIO_API_BASE_URL", "")


class SmsExtension(lcextension.Extension):
    def init(self) -> None:
        self.requestHandlers = {"run": self.run}
        self.eventHandlers: dict[str, Any] = {}

    def run(self, sdk: _Manager, data: dict[str, Any], conf: dict[str, Any], res_state: Any) -> Any:
        client = Client(oid=sdk._oid, jwt=sdk._jwt, timeout=10)
        record = Hive(Organization(client), "secret").get("twilio")
        sid, _, token = (record.data or {})["secret"].partition("/")
        twilio = TwilioClient(sid, token)
        if TWILIO_API_BASE_URL:
            twilio.api.base_url = TWILIO_API_BASE_URL
        message = twilio.messages.create(to=data["to"], from_=data["from"], body=data["body"])
        return lcextension.Response(data={"sid": message.sid})


app = SmsExtension("ext-twilio-baseline", os.environ.get("LC_SHARED_SECRET", "")).getApp()
