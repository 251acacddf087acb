"""The extension's webhook adapter, kept in step with the organisation's subscription: made on
`subscribe` (and on `update` when it is missing, here or in the organisation), removed on `unsubscribe`,
with that event's JWT.

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
        else:
            secret = services.adapter_secret(oid=oid)
            if event_name == "update" and _whole(oid, jwt, secret):
                return
            made = credentials.adapter_ensure(oid=oid, jwt=jwt, secret=secret)
            services.adapter_ready(oid=oid, installation_key=made.installation_key, hooks_url=made.hooks_url)
    except credentials.AdapterError as exc:
        logger.warning("webhook adapter of org %s after %s: %s; the next update tries again", oid, event_name, exc)
        services.adapter_failed(oid=oid, error=str(exc))


def _whole(oid: str, jwt: str, secret: str) -> bool:
    """Made here and still in the organisation as made (one read): someone may have deleted it there."""
    return not services.adapter_needed(oid=oid) and credentials.adapter_present(oid=oid, jwt=jwt, secret=secret)
