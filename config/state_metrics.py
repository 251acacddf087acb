"""The gauges /metrics reads from the database when it is scraped (see deliveries.observability.metrics
for the counted events). The status queries use the (status, -created_at) index; the count by status
reads all of it, which is fine at a scrape every 15-60 s. The time to acknowledge reads the last 24
hours' acknowledged deliveries (a partial index)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import timedelta

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from deliveries import selectors
from deliveries.observability.metrics import PREFIX
from deliveries.status import Status


class DatabaseCollector(Collector):
    def collect(self) -> Iterable[Metric]:
        counts = selectors.deliveries_by_status()
        by_status = GaugeMetricFamily(f"{PREFIX}_deliveries", "Deliveries by current status.", labels=["status"])
        for status in Status.values:
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status

        yield GaugeMetricFamily(
            f"{PREFIX}_deliveries_suppressed",
            "Deliveries deliberately not sent (status suppressed: opt-out or flood control).",
            value=counts.get(Status.SUPPRESSED, 0),
        )

        oldest = selectors.oldest_pending_created_at()
        yield GaugeMetricFamily(
            f"{PREFIX}_oldest_pending_delivery_age_seconds",
            "Age of the oldest delivery still pending (queued for a first try or a retry); 0 when none.",
            value=max(0.0, time.time() - oldest.timestamp()) if oldest else 0.0,
        )

        yield from _mtta()


def _mtta() -> Iterable[Metric]:
    """p50 and p90 of the time to acknowledge over the last 24 hours, by channel and by organisation
    (not by recipient: phone numbers are personal data and would make a label per person)."""
    window = selectors.mtta(since=timezone.now() - timedelta(hours=24))
    for name, labels, rows in (
        ("channel", "channel", window.by_channel),
        ("organisation", "organisation", window.by_organisation),
    ):
        family = GaugeMetricFamily(
            f"{PREFIX}_mtta_by_{name}_seconds",
            f"Time to acknowledge an alert over the last 24 hours, p50 and p90, by {name}.",
            labels=[labels, "quantile"],
        )
        for key, (p50, p90) in selectors.mtta_by(rows).items():
            family.add_metric([key, "0.5"], p50)
            family.add_metric([key, "0.9"], p90)
        yield family
