"""State and its invariants. Every write goes through deliveries.services.

organizations  Organization, Credential, AlertRequest, ErrorReport
deliveries     Delivery, Attempt, StatusEvent
replies        OptOut, InboundMessage, Escalation
"""

from deliveries.models.deliveries import Attempt, Delivery, StatusEvent
from deliveries.models.organizations import AlertRequest, Credential, ErrorReport, Organization
from deliveries.models.replies import Escalation, InboundMessage, OptOut

__all__ = [
    "AlertRequest",
    "Attempt",
    "Credential",
    "Delivery",
    "ErrorReport",
    "Escalation",
    "InboundMessage",
    "OptOut",
    "Organization",
    "StatusEvent",
]
