"""The audit desk's writes: resend a delivery, clear an opt-out, label an organisation; and the rules of
a resend (when it cannot work, and when it is unusual enough to need an explicit confirmation)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from deliveries import status as statuses
from deliveries.models import Delivery, OptOut, Organization
from deliveries.selectors import active_opt_out, alerts_acknowledged, opted_out_pairs
from deliveries.services import queue

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser as User

logger = logging.getLogger(__name__)
Status = Delivery.Status


class Refused(Exception):
    """An operator's request the desk will not carry out; the message says why, for the operator."""


# --- the rules -------------------------------------------------------------------------------------


def delivery_resend_refusal(*, delivery: Delivery) -> str:
    """Why this delivery cannot be resent, or "" if it can."""
    org: Organization = delivery.organization
    if org.subscription == Organization.Subscription.UNSUBSCRIBED:
        return f"organisation {org.display_name} has unsubscribed from the extension"
    credential = delivery.credential
    if credential is not None and credential.rejected_at is not None:
        return (
            f"Twilio refused its credential ({credential.account_sid}, error 20003: wrong Account SID or Auth Token) "
            f"on {credential.rejected_at:%Y-%m-%d %H:%M} UTC; a resend would fail too. The organisation's next alert "
            "reads the secret again"
        )
    if credential is None or not credential.usable:
        return f"no Twilio credential is stored for organisation {org.display_name}"
    if delivery.status not in statuses.RESENDABLE:
        return f"it is {delivery.status}: a send is already on its way"
    return ""


def delivery_resend_warning(*, delivery: Delivery, opt_out: OptOut | None | bool = None) -> str:
    """Why resending this delivery is unusual, or "". `opt_out` may be given when already known."""
    if opt_out is None:
        opt_out = active_opt_out(delivery=delivery)
    if opt_out:
        return (
            f"{delivery.to_number} opted out of texts from {delivery.from_number} (texted STOP): Twilio refuses "
            "it with 21610 unless they have since texted START"
        )
    if delivery.status == Status.DELIVERED:
        return "Twilio reported it delivered: the recipient already has this message and would get it twice"
    if delivery.status == Status.AMBIGUOUS:
        return "Twilio's answer was ambiguous: the message may exist at Twilio and the recipient could get it twice"
    if delivery.status in statuses.AT_TWILIO_UNSETTLED:
        return f"Twilio accepted it ({delivery.status}) and has not reported a final status: it may still arrive"
    return ""


@dataclass(frozen=True)
class ResendCandidate:
    delivery: Delivery
    refusal: str  # why it cannot be resent; "" if it can
    warning: str  # why resending is unusual and needs the explicit confirmation; "" if not
    acknowledged: str = ""  # who acknowledged the alert and when, if someone did


def resend_review(*, ids: Iterable[str]) -> list[ResendCandidate]:
    """What a resend of these deliveries would do, one entry each, newest first, in two queries."""
    deliveries = list(
        Delivery.objects.filter(id__in=list(ids)).select_related("organization", "credential").order_by("-created_at")
    )
    opted_out = opted_out_pairs(deliveries=deliveries)
    acknowledged = alerts_acknowledged(deliveries=deliveries)
    return [
        ResendCandidate(
            delivery=d,
            refusal=delivery_resend_refusal(delivery=d),
            warning=delivery_resend_warning(
                delivery=d, opt_out=(d.organization_id, d.from_number, d.to_number) in opted_out
            ),
            acknowledged=acknowledged.get(d.alert_id, "") if d.alert_id else "",
        )
        for d in deliveries
    ]


# --- the writes ------------------------------------------------------------------------------------


def delivery_resend(*, delivery: Delivery, by: User, reason: str, unusual_confirmed: bool = False) -> Delivery:
    """Put a delivery back in the queue so the ordinary send task sends it again.

    The new attempt is made by the same task and policy as any send, with trigger `resend`, the
    operator and the reason; earlier attempts are not touched. It is refused when it cannot work,
    and when it is unusual (see delivery_resend_warning) and the operator has not confirmed that
    explicitly; the Refused message is shown to them.
    """
    reason = reason.strip()
    if not reason:
        raise Refused("a reason is required")
    refusal = delivery_resend_refusal(delivery=delivery)
    if refusal:
        raise Refused(refusal)
    warning = delivery_resend_warning(delivery=delivery)
    if warning and not unusual_confirmed:
        raise Refused(f"{warning}; resending it needs the explicit confirmation")
    now = timezone.now()
    with transaction.atomic():
        # Conditional, like the send claim: if a worker or another operator moved the row since the
        # page was drawn, nothing happens and the operator is told.
        moved = Delivery.objects.filter(id=delivery.id, status__in=statuses.RESENDABLE).update(
            status=Status.PENDING,
            settled_at=None,
            status_reason=f"resend by {by.get_username()}"[:255],
            # Kept on the row, so whichever task sends it records the operator and the reason.
            resend_by=by,
            resend_reason=reason,
            due_at=now,
            updated_at=now,
        )
        if not moved:
            current = Delivery.objects.filter(id=delivery.id).values_list("status", flat=True).first()
            raise Refused(f"it is {current} now, already on its way")
        ids = [str(delivery.id)]
        transaction.on_commit(lambda: queue.send(ids))
    logger.info("delivery %s resend requested by user %s: %s", delivery.id, by.pk, reason[:200])
    delivery.refresh_from_db()
    return delivery


def opt_out_clear(*, opt_out: OptOut, by: User, reason: str) -> OptOut:
    """Clear an opt-out (the person texted START, or it was recorded in error). It is kept, with who
    cleared it and why; sends to the pair are no longer suppressed."""
    reason = reason.strip()
    if not reason:
        raise Refused("a reason is required")
    now = timezone.now()
    cleared = OptOut.objects.filter(id=opt_out.id, cleared_at__isnull=True).update(
        cleared_at=now, cleared_by=by, cleared_reason=reason
    )
    if not cleared:
        raise Refused("it was already cleared")
    logger.info("opt-out %s (%s from %s) cleared by user %s", opt_out.id, opt_out.recipient, opt_out.sender, by.pk)
    opt_out.refresh_from_db()
    return opt_out


def organization_label_set(*, organization: Organization, label: str, by: User) -> Organization:
    """The desk's own name for an organisation (it wins over LimaCharlie's); "" removes it."""
    label = label.strip()[:200]
    Organization.objects.filter(id=organization.id).update(label=label, updated_at=timezone.now())
    logger.info("organisation %s labelled %r by user %s", organization.oid, label, by.pk)
    organization.refresh_from_db()
    return organization
