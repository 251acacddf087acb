"""The admin index's "at a glance": deliveries per hour by outcome, drawn as inline SVG (no CDN, no
JavaScript: deployments may have no internet), and what needs attention now, each a link."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import template
from django.urls import reverse

from deliveries import selectors
from deliveries import status as statuses
from deliveries.selectors import HourlySeries

register = template.Library()

WIDTH, HEIGHT = 672, 90


def _chart(series: HourlySeries) -> dict[str, Any]:
    """Stacked bars, one per hour, in SVG user units; heights relative to the busiest hour."""
    n = len(series.hours)
    totals = [sum(series.counts[name][i] for name in selectors.OUTCOME_CLASSES) for i in range(n)]
    peak = max(totals, default=0) or 1
    step = WIDTH / max(n, 1)
    bars = []
    for i, hour in enumerate(series.hours):
        y = float(HEIGHT)
        parts = []
        for name in selectors.OUTCOME_CLASSES:
            count = series.counts[name][i]
            if not count:
                continue
            h = HEIGHT * count / peak
            y -= h
            parts.append({"y": round(y, 2), "h": round(h, 2), "colour": statuses.CLASS_COLOURS[name]})
        title = f"{hour:%Y-%m-%d %H:00} UTC: " + (
            ", ".join(f"{series.counts[k][i]} {k}" for k in selectors.OUTCOME_CLASSES if series.counts[k][i]) or "none"
        )
        bars.append({"x": round(i * step, 2), "w": round(max(step - 1, 1), 2), "parts": parts, "title": title})
    return {
        "bars": bars,
        "peak": max(totals, default=0),
        "total": series.total,
        "width": WIDTH,
        "height": HEIGHT,
        "start": series.hours[0] if series.hours else None,
    }


@register.inclusion_tag("admin/deliveries/at_a_glance.html", takes_context=True)
def at_a_glance(context: template.Context) -> dict[str, Any]:
    request = context.get("request")
    if request is None or not request.user.has_perm("deliveries.view_delivery"):
        return {"show": False}
    glance = selectors.at_a_glance()
    changelist = reverse("admin:deliveries_delivery_changelist")
    since = glance.since_24h.strftime("%Y-%m-%dT%H:%M")
    return {
        "show": True,
        "glance": glance,
        "charts": [("Last 24 hours", _chart(glance.last_24h)), ("Last 7 days", _chart(glance.last_7d))],
        "legend": list(statuses.CLASS_COLOURS.items()),
        "links": {
            "waiting": f"{changelist}?{urlencode({'status__in': 'pending,sending'})}",
            "failed": f"{changelist}?{urlencode({'status__exact': 'failed', 'created_from': since})}",
            "ambiguous": f"{changelist}?{urlencode({'status__exact': 'ambiguous'})}",
            "unacknowledged": f"{changelist}?{urlencode({'acknowledged': 'no', 'created_from': since})}",
        },
    }
