"""The extension's webhook adapter, kept in step with the organisation's subscription: made on
`subscribe` (and on `update` when it is missing), removed on `unsubscribe`, with that event's JWT.

A failure never fails the event: it is logged and kept on the desk, and the next `update` (about
daily) tries again. Its message names the step and HTTP status, never the JWT or the secret."""

from __future__ import annotations

import logging

from deliveries import services
from extension import credentials

logger = logging.getLogger(__name__)


def sync(*, event_name: str, oid: str, jwt: str) -> None:
    try:
        if event_name == "unsubscribe":
            services.adapter_removed(oid=oid)  # the secret goes whatever LimaCharlie answers
            credentials.adapter_delete(oid=oid, jwt=jwt)
        elif event_name == "subscribe" or services.adapter_needed(oid=oid):
            made = credentials.adapter_ensure(oid=oid, jwt=jwt, secret=services.adapter_secret(oid=oid))
            services.adapter_ready(oid=oid, installation_key=made.installation_key, hooks_url=made.hooks_url)
    except credentials.AdapterError as exc:
        logger.warning("webhook adapter of org %s after %s: %s; the next update tries again", oid, event_name, exc)
        services.adapter_failed(oid=oid, error=str(exc))
