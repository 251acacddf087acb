"""Reads for the audit desk and /metrics that are more than a one-liner. Nothing here writes.

search   what a search box entry finds (numbers in any format, the alert's text, ids, codes)
words    codes, failures, holds and waits in words (no queries)
records  opt-outs, a delivery's timeline and facts, operations figures, the CSV export
glance   the index: per-hour chart, true counts, the last 24 h by error, MTTA
alerts   the alert page: one `run` call's summary, escalation state and merged timeline
"""

from deliveries.selectors.alerts import AlertPage, Event, alert_page, escalation_words, pretty_number
from deliveries.selectors.glance import (
    FAILED,
    OUTCOME_CLASSES,
    ErrorRow,
    Glance,
    HourlySeries,
    Mtta,
    MttaRow,
    at_a_glance,
    deliveries_per_hour,
    errors_since,
    mtta,
    mtta_by,
    needs_operator_q,
    unacknowledged,
)
from deliveries.selectors.records import (
    EXPORT_COLUMNS,
    NEEDS_OPERATOR,
    DeliveryFacts,
    TimelineEntry,
    active_opt_out,
    alerts_acknowledged,
    deliveries_by_status,
    deliveries_export_rows,
    delivery_facts,
    delivery_timeline,
    error_code_choices,
    needs_operator,
    oldest_pending_created_at,
    opted_out_pairs,
    why_in_words,
)
from deliveries.selectors.search import (
    TWILIO_MESSAGE_SID,
    SearchText,
    as_e164,
    delivery_search,
    national_candidates,
    number_q,
)
from deliveries.selectors.words import ago, code_meaning, duration, error_in_words, plural

__all__ = [
    "EXPORT_COLUMNS",
    "FAILED",
    "NEEDS_OPERATOR",
    "OUTCOME_CLASSES",
    "TWILIO_MESSAGE_SID",
    "AlertPage",
    "DeliveryFacts",
    "ErrorRow",
    "Event",
    "Glance",
    "HourlySeries",
    "Mtta",
    "MttaRow",
    "SearchText",
    "TimelineEntry",
    "active_opt_out",
    "ago",
    "alert_page",
    "alerts_acknowledged",
    "as_e164",
    "at_a_glance",
    "code_meaning",
    "deliveries_by_status",
    "deliveries_export_rows",
    "deliveries_per_hour",
    "delivery_facts",
    "delivery_search",
    "delivery_timeline",
    "duration",
    "error_code_choices",
    "error_in_words",
    "errors_since",
    "escalation_words",
    "mtta",
    "mtta_by",
    "national_candidates",
    "needs_operator",
    "needs_operator_q",
    "number_q",
    "oldest_pending_created_at",
    "opted_out_pairs",
    "plural",
    "pretty_number",
    "unacknowledged",
    "why_in_words",
]
