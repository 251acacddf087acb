"""Receipts: Twilio's status callbacks, and the opt-outs they (and send answers) reveal."""

from __future__ import annotations

import enum
import logging

from django.db import transaction
from django.utils import timezone

from deliveries import status as statuses
from deliveries.models import Delivery, OptOut, StatusEvent
from deliveries.observability import metrics
from deliveries.services import events
from deliveries.twilio.callbacks import StatusReport, parse_status_callback, signature_valid

logger = logging.getLogger(__name__)


class CallbackResult(enum.StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # this status of this delivery was recorded before: nothing changes
    UNKNOWN = "unknown"  # no such delivery, or nothing to check the signature with
    FORGED = "forged"


def status_callback_record(*, delivery_id: str, url: str, params: dict[str, str], signature: str) -> CallbackResult:
    """Store a Twilio status callback and move the delivery's status forward (never backward:
    callbacks arrive out of order and more than once, and a final status is final)."""
    with transaction.atomic():
        # The row lock makes "seen before?" and the write one step: Twilio's retries of one status
        # wait for each other. Checked with the token of the credential this delivery was sent with.
        try:
            delivery = (
                Delivery.objects.select_related("credential", "alert")
                .select_for_update(of=("self",))
                .get(id=delivery_id)
            )
        except Delivery.DoesNotExist:
            delivery = None
        if delivery is None or delivery.credential is None or not delivery.credential.usable:
            logger.warning("status callback for unknown delivery %s (or no credential to check it)", delivery_id)
            return CallbackResult.UNKNOWN
        if not signature_valid(auth_token=delivery.credential.auth_token, url=url, params=params, signature=signature):
            logger.warning("status callback for delivery %s with an invalid X-Twilio-Signature", delivery_id)
            return CallbackResult.FORGED
        report = parse_status_callback(params)
        if StatusEvent.objects.filter(delivery=delivery, message_status=report.twilio_status).exists():
            # Twilio's retry, or a replay (its signature carries no time): acted on once already.
            metrics.webhook_duplicate("status")
            logger.info("status %r of delivery %s seen before: ignored", report.twilio_status, delivery_id)
            return CallbackResult.DUPLICATE
        StatusEvent.objects.create(
            delivery=delivery,
            message_sid=report.message_sid,
            message_status=report.twilio_status,
            error_code=report.error_code,
            payload=params,
        )
        _apply(delivery, report)
    return CallbackResult.STORED


def _apply(delivery: Delivery, report: StatusReport) -> None:
    if report.status is None or not statuses.moves_forward(delivery.status, report.status):
        return  # older news, or a status we do not track: kept as an event only
    now = timezone.now()
    delivery.status, delivery.updated_at, delivery.due_at = report.status, now, None
    # The callback proves the message exists: adopt its SID even if the worker died before saving it.
    delivery.twilio_sid = delivery.twilio_sid or report.message_sid
    delivery.sent_at = delivery.sent_at or now
    changed = ["status", "updated_at", "due_at", "twilio_sid", "sent_at"]
    if report.error_code is not None:
        delivery.error_code, delivery.error_message = report.error_code, report.error_meaning
        changed += ["error_code", "error_message"]
    if report.status in statuses.FINAL:
        delivery.settled_at = now
        changed.append("settled_at")
    delivery.save(update_fields=changed)
    events.delivery_settled(delivery)  # for LimaCharlie: delivered, undelivered, failed, unacknowledged
    if report.opted_out:
        opt_out_record(delivery=delivery)


def opt_out_record(*, delivery: Delivery) -> OptOut:
    """Twilio said 21610: this recipient texted STOP to this sender. Later texts to the pair are held
    back as `suppressed` without calling Twilio, until an operator clears the opt-out."""
    opt_out, created = OptOut.objects.get_or_create(
        organization_id=delivery.organization_id,
        sender=delivery.from_number,
        recipient=delivery.to_number,
        cleared_at__isnull=True,
        defaults={"source_delivery": delivery},
    )
    if created:
        logger.info(
            "recorded opt-out of %s from sender %s (delivery %s)", delivery.to_number, delivery.from_number, delivery.id
        )
    return opt_out
