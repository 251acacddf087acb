"""Every write to the delivery domain, one module per concern. Views, tasks, the admin and commands
call these (imported from this package) and nothing else writes.

    accept         a `run` call becomes pending deliveries, enqueued after commit
    organizations  subscription events, error reports
    credentials    the Twilio credential each delivery is bound to
    send           claim, POST to Twilio, record the result (flood: the hold rules it applies)
    reconcile      after an ambiguous answer: look at Twilio, then adopt, resend or fail
    receipts       Twilio's status callbacks and the opt-outs they reveal
    sweep          the safety net: overdue tasks, lost claims, flood-control summaries
    desk           the audit desk: resend (and its rules), clearing opt-outs
    attempts       the one writer of attempt bookkeeping
    queue          the only place that enqueues a task, with one broker-failure policy
    inbound        Twilio's inbound webhooks: messages (STOP, START, HELP, replies) and call keypresses
    acknowledge    an alert acknowledged: recorded, its escalation stopped, others told
    escalate       ack_within timers and their steps: a call, or the next recipient
    calls          an escalation's call placed at Twilio, or looked up after an ambiguous answer
    codes          acknowledgement codes
    approvals      request_approval: the question, its answers by text or keypress, its timeout
    events         the outbox of events for the organisation's LimaCharlie, and their posting
    adapters       the organisation's webhook adapter as kept here (secret, hook URL, installation key)
"""

from deliveries.services.accept import (
    Accepted,
    CredentialGone,
    alert_request_reply,
    deliveries_accept,
)
from deliveries.services.acknowledge import alert_acknowledge
from deliveries.services.adapters import adapter_failed, adapter_needed, adapter_ready, adapter_removed, adapter_secret
from deliveries.services.approvals import ApprovalPlan, approval_timeout
from deliveries.services.calls import call_number_refusal, call_request_refusal
from deliveries.services.codes import LENGTH as ACK_CODE_LENGTH
from deliveries.services.credentials import credentials_reencrypt, recall, remember
from deliveries.services.desk import (
    Refused,
    ResendCandidate,
    delivery_resend,
    delivery_resend_refusal,
    delivery_resend_warning,
    opt_out_clear,
    organization_label_set,
    resend_review,
)
from deliveries.services.escalate import AckPlan, escalation_fire
from deliveries.services.events import events_follow_up, events_post
from deliveries.services.inbound import InboundAnswer, WebhookResult, call_gather_record, inbound_message_record
from deliveries.services.organizations import error_report_record, organization_name_record, organization_record_event
from deliveries.services.receipts import CallbackResult, opt_out_record, status_callback_record
from deliveries.services.reconcile import delivery_reconcile
from deliveries.services.send import SendDecision, delivery_send, follow_up, retry_delay, status_callback_url
from deliveries.services.sweep import SweepReport, deliveries_sweep, flood_summaries_send

__all__ = [
    "ACK_CODE_LENGTH",
    "AckPlan",
    "ApprovalPlan",
    "approval_timeout",
    "adapter_failed",
    "adapter_needed",
    "adapter_ready",
    "adapter_removed",
    "adapter_secret",
    "call_number_refusal",
    "call_request_refusal",
    "InboundAnswer",
    "WebhookResult",
    "alert_acknowledge",
    "call_gather_record",
    "escalation_fire",
    "events_follow_up",
    "events_post",
    "inbound_message_record",
    "Accepted",
    "CredentialGone",
    "recall",
    "remember",
    "CallbackResult",
    "Refused",
    "ResendCandidate",
    "SendDecision",
    "SweepReport",
    "alert_request_reply",
    "deliveries_accept",
    "deliveries_sweep",
    "delivery_reconcile",
    "delivery_resend",
    "delivery_resend_refusal",
    "delivery_resend_warning",
    "delivery_send",
    "error_report_record",
    "flood_summaries_send",
    "follow_up",
    "opt_out_clear",
    "opt_out_record",
    "organization_label_set",
    "organization_name_record",
    "organization_record_event",
    "credentials_reencrypt",
    "resend_review",
    "retry_delay",
    "status_callback_record",
    "status_callback_url",
]
