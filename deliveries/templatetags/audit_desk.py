"""The admin index's "at a glance": deliveries per hour by outcome, drawn as inline SVG (no CDN, no
JavaScript: deployments may have no internet), what needs attention now, the last 24 hours by error
and the time to acknowledge, each count a link to the rows it counts. Also the desk's filters for
codes and numbers in words."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django import template
from django.urls import reverse

from deliveries import selectors
from deliveries import status as statuses
from deliveries.models import Attempt, Delivery
from deliveries.selectors import HourlySeries

register = template.Library()


@register.filter
def code_meaning(code: int | None) -> str:
    return selectors.code_meaning(code)


@register.filter
def pretty_number(number: str) -> str:
    return selectors.pretty_number(number)


@register.simple_tag
def attempt_words(attempt: Attempt) -> str:
    """An attempt's code and its meaning, or its failure in words (never a Python class name)."""
    if attempt.twilio_code:
        return selectors.error_in_words(attempt.twilio_code, "")
    if attempt.outcome in (Attempt.Outcome.ACCEPTED, Attempt.Outcome.FOUND_ON_RECONCILE):
        return attempt.twilio_message
    return selectors.error_in_words(None, attempt.twilio_message)


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

    def link(**params: str) -> str:
        return f"{changelist}?{urlencode(params)}"

    errors = [
        {
            "code": row.code,
            "meaning": row.meaning,
            "count": row.count,
            "url": link(error_code=str(row.code), status__in="failed,undelivered", created_from=since)
            if row.code
            else link(status__in="failed,undelivered", created_from=since),
        }
        for row in glance.errors_24h
    ]
    return {
        "show": True,
        "glance": glance,
        "charts": [("Last 24 hours", _chart(glance.last_24h)), ("Last 7 days", _chart(glance.last_7d))],
        "legend": list(statuses.CLASS_COLOURS.items()),
        "errors": errors,
        "mtta": selectors.mtta(since=glance.since_24h - timedelta(days=6)),
        "links": {
            "waiting": link(status__in="pending,sending"),
            "failed": link(status__in="failed,undelivered", created_from=since),
            "held": link(status__exact="suppressed", created_from=since),
            "ambiguous": link(status__exact="ambiguous"),
            "needs_operator": link(needs_operator="yes"),
            "unacknowledged": link(acknowledged="no", created_from=since),
        },
    }


@register.filter
def duration(value: timedelta | None) -> str:
    return selectors.duration(value)


@register.filter
def why_words(delivery: Delivery) -> str:
    """A delivery's hold, error or need of an operator, in words."""
    return selectors.why_in_words(delivery)
