"""The audit desk: the Django admin for SOC leads (audit) and operators (audit and resend).

History is append-only here: nobody, superusers included, adds, edits or deletes a delivery, an
attempt or a status event. Views and actions stay thin: reads come from deliveries.selectors,
writes go through deliveries.services.

One module a page: base (what every page shares, and the desk's name), alerts (the alert page), filters
(the delivery list's), deliveries (the
list, the delivery page and the CSV export), resend (its confirmation pages), opt_outs, and records
(attempts, status events, organisations, error reports), replies (inbound messages and escalation
timers), loop (events for LimaCharlie, webhook adapters, approvals). Importing them here runs their
@admin.register.
"""

from deliveries.admin import alerts, deliveries, loop, opt_outs, records, replies  # noqa: F401
