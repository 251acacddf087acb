"""State and its invariants. Every write goes through deliveries.services.

organizations  Organization, Credential, AlertRequest, ErrorReport, HandledCall
deliveries     Delivery, Attempt, StatusEvent
replies        OptOut, InboundMessage, Escalation
"""

from deliveries.models.deliveries import Attempt, Delivery, StatusEvent
from deliveries.models.organizations import AlertRequest, Credential, ErrorReport, HandledCall, Organization
from deliveries.models.replies import Escalation, InboundMessage, OptOut

__all__ = [
    "AlertRequest",
    "Attempt",
    "Credential",
    "Delivery",
    "ErrorReport",
    "Escalation",
    "HandledCall",
    "InboundMessage",
    "OptOut",
    "Organization",
    "StatusEvent",
]
