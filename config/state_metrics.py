"""The gauges /metrics reads from the database when it is scraped (see deliveries.observability.metrics
for the counted events). Both queries use the (status, -created_at) index; the count by status reads
all of it, which is fine at a scrape every 15-60 s."""

from __future__ import annotations

import time
from collections.abc import Iterable

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
