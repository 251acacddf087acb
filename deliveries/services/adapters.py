"""The organisation's webhook adapter as this service keeps it: the secret it generated (encrypted),
the hook URL, the installation key, and whether the adapter is whole. The LimaCharlie calls that make
or remove it live in extension.credentials; extension.adapter runs them and reports here."""

from __future__ import annotations

import logging
import secrets

from django.db import transaction
from django.utils import timezone

from deliveries.models import Organization, OutboundEvent, WebhookAdapter
from deliveries.services import queue

logger = logging.getLogger(__name__)
SECRET_BYTES = 32


def _adapter(oid: str) -> WebhookAdapter:
    organization = Organization.objects.get_or_create(oid=oid)[0]
    return WebhookAdapter.objects.select_for_update().get_or_create(organization=organization)[0]


def adapter_needed(*, oid: str) -> bool:
    """Whether the adapter must be made (again): never made, failed, or removed."""
    adapter = WebhookAdapter.objects.filter(organization__oid=oid).first()
    return adapter is None or not adapter.usable


def adapter_secret(*, oid: str) -> str:
    """The organisation's adapter secret, generated the first time and kept from then on, so that making
    the adapter again never breaks a hook URL in use."""
    with transaction.atomic():
        adapter = _adapter(oid)
        if not adapter.secret:
            adapter.secret = secrets.token_urlsafe(SECRET_BYTES)
            adapter.save(update_fields=["secret", "updated_at"])
        return adapter.secret


def adapter_ready(*, oid: str, installation_key: str, hooks_url: str) -> None:
    """The adapter is whole: events waiting for it are posted now."""
    with transaction.atomic():
        adapter = _adapter(oid)
        adapter.installation_key, adapter.hooks_url = installation_key[:64], hooks_url[:255]
        adapter.ready_at, adapter.last_error = timezone.now(), ""
        adapter.save()
        unsent = OutboundEvent.objects.filter(organization_id=adapter.organization_id, sent_at__isnull=True)
        waiting = unsent.update(due_at=adapter.ready_at)  # due now, however long they waited
        organization_id = adapter.organization_id
        if waiting:
            transaction.on_commit(lambda: queue.post_events([organization_id]))
    logger.info("webhook adapter of org %s is ready (installation key %s)", oid, installation_key)


def adapter_failed(*, oid: str, error: str) -> None:
    """Making or removing it failed: kept for the desk; the next `update` event tries again."""
    with transaction.atomic():
        adapter = _adapter(oid)
        adapter.last_error = error[:255]
        adapter.save(update_fields=["last_error", "updated_at"])


def adapter_removed(*, oid: str) -> None:
    """Unsubscribed: the secret is erased (the organisation withdrew its consent) and nothing is posted
    until a new subscribe makes the adapter again with a new one."""
    with transaction.atomic():
        adapter = _adapter(oid)
        adapter.secret, adapter.ready_at, adapter.installation_key = "", None, ""
        adapter.save(update_fields=["secret", "ready_at", "installation_key", "updated_at"])
