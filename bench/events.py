"""Events for LimaCharlie in `make bench`: the organisations subscribe, as LimaCharlie tells an extension
when an organisation subscribes to it (a signed `event` with `event_name: subscribe` to /extension/), so
that the service makes each one's webhook adapter through the fake LimaCharlie; the bench then checks
that every organisation has one before it sends the load."""

from __future__ import annotations

import gzip
import http.client
import json
import uuid

from bench.e2e import Org, System, http_get, signed_headers


def subscribe(system: System, orgs: list[Org], limacharlie_url: str) -> None:
    """Subscribe every organisation; an error if the service refuses or an adapter is missing after it."""
    conn = http.client.HTTPConnection("127.0.0.1", system.port, timeout=60)
    try:
        for org in orgs:
            block = {"org": {"oid": org.oid, "jwt": org.jwt, "ident": ""}, "event_name": "subscribe"}
            envelope = {"version": 20221218, "idempotency_key": f"bench-{uuid.uuid4()}", "event": block}
            body = json.dumps(envelope, separators=(",", ":")).encode()
            conn.request("POST", system.path, gzip.compress(body), signed_headers(system.secret, body))
            response = conn.getresponse()
            answer = response.read()
            if response.status != 200:
                raise RuntimeError(f"subscribe of org {org.oid} answered {response.status}: {answer[:300]!r}")
    finally:
        conn.close()
    adapters = http_get(limacharlie_url, "/_bench/hook")["adapters"]
    if adapters != len(orgs):
        raise RuntimeError(f"{adapters} webhook adapters in the fake LimaCharlie after {len(orgs)} subscribes")
