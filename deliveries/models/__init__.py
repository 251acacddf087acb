"""State and its invariants. Every write goes through deliveries.services.

organizations  Organization, Credential, AlertRequest, ErrorReport, HandledCall
deliveries     Delivery, Attempt, StatusEvent
replies        OptOut, InboundMessage, Escalation
loop           WebhookAdapter, OutboundEvent, Approval (events and approvals for LimaCharlie)
"""

from deliveries.models.deliveries import Attempt, Delivery, StatusEvent
from deliveries.models.loop import Approval, OutboundEvent, WebhookAdapter
from deliveries.models.organizations import AlertRequest, Credential, ErrorReport, HandledCall, Organization
from deliveries.models.replies import Escalation, InboundMessage, OptOut

__all__ = [
    "AlertRequest",
    "Approval",
    "Attempt",
    "Credential",
    "Delivery",
    "ErrorReport",
    "Escalation",
    "HandledCall",
    "InboundMessage",
    "OptOut",
    "Organization",
    "OutboundEvent",
    "StatusEvent",
    "WebhookAdapter",
]
