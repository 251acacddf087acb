"""The alert page: one `run` call (an AlertRequest) with every text, call, next-person step, hold,
resend, reply and acknowledgement it caused, as one summary line, its escalation state in words and
one timeline. A handful of queries, each by the alert's deliveries (its foreign key and their ids)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

import phonenumbers
from django.utils import timezone

from deliveries.models import AlertRequest, Attempt, Delivery, Escalation, InboundMessage, StatusEvent
from deliveries.selectors import words

Channel = Delivery.Channel
Outcome = Attempt.Outcome


def pretty_number(number: str) -> str:
    """+14155550141 -> +1 415-555-0141 (as phonenumbers writes it internationally); as is otherwise."""
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


@dataclass(frozen=True)
class Event:
    at: datetime
    kind: str  # text, call, notice, status, key, reply, ack, hold, resend, lookup, step
    arrow: str  # "→" to a person, "←" from one, "" for the service's own
    number: str
    words: str
    code: int | None = None
    meaning: str = ""
    delivery_id: str = ""


@dataclass
class AlertPage:
    alert: AlertRequest
    title: str
    organisation: str
    rule: str
    inv_id: str
    summary: str
    counts: str
    escalation: str
    deliveries: list[Delivery]
    timeline: list[Event] = field(default_factory=list)
    acknowledged: Delivery | None = None


def alert_page(*, alert: AlertRequest, newest_first: bool = False, now: datetime | None = None) -> AlertPage:
    now = now or timezone.now()
    deliveries = list(alert.deliveries.select_related("organization").order_by("created_at", "id"))
    texts = [d for d in deliveries if d.kind == Delivery.Kind.ALERT and d.channel == Channel.SMS]
    calls = [d for d in deliveries if d.channel == Channel.VOICE]
    acked = min((d for d in deliveries if d.acknowledged_at), key=lambda d: d.acknowledged_at, default=None)  # type: ignore[arg-type, return-value]
    first = texts[0] if texts else (deliveries[0] if deliveries else None)
    timers = list(Escalation.objects.filter(alert__in=deliveries).order_by("created_at", "id"))
    recipients = {d.to_number for d in texts} | {d.to_number for d in calls}
    page = AlertPage(
        alert=alert,
        title=(first.body.splitlines() or [""])[0] if first else alert.idempotency_key,
        organisation=alert.organization.display_name,
        rule=first.ident if first else "",
        inv_id=first.inv_id if first else "",
        summary=_summary(acked, alert),
        counts=" · ".join(
            [
                words.plural(len(recipients), "recipient", "recipients"),
                words.plural(len(texts), "text", "texts"),
                words.plural(len(calls), "call", "calls"),
            ]
        ),
        escalation=escalation_words(timers, acked, now),
        deliveries=deliveries,
        acknowledged=acked,
    )
    events = sorted(_events(deliveries, timers), key=lambda e: (e.at, _ORDER.get(e.kind, 5)))
    page.timeline = events[::-1] if newest_first else events
    return page


# Within one second: the step before the call, the key before the acknowledgement it causes.
_ORDER = {"step": 0, "hold": 1, "text": 2, "call": 2, "resend": 2, "status": 3, "key": 4, "reply": 4, "ack": 6}


def _summary(acked: Delivery | None, alert: AlertRequest) -> str:
    if acked is None or acked.acknowledged_at is None:
        return "Not acknowledged."
    channel = "voice" if acked.ack_channel == Channel.VOICE else "text reply"
    after = words.duration(acked.acknowledged_at - alert.created_at)
    return f"Acknowledged by {pretty_number(acked.acknowledged_by or acked.to_number)} by {channel} after {after}."


def escalation_words(timers: list[Escalation], acked: Delivery | None, now: datetime) -> str:
    """ "step 2 of 3, next in 4:32", "stopped: acknowledged", "ran out: nobody acknowledged"."""
    if not timers:
        return "no escalation (the rule set no ack_within)"
    action = timers[0].action
    total = 1 + (len(timers[0].remaining) if action == Escalation.Action.NEXT else 1)
    fired = [t for t in timers if t.state == Escalation.State.FIRED and t.result_id]
    waiting = [t for t in timers if t.state == Escalation.State.WAITING]
    minutes = words.duration(timedelta(seconds=timers[0].ack_within_seconds))
    what = "text the next person" if action == Escalation.Action.NEXT else "call"
    if acked is not None:
        return f"stopped: acknowledged (the rule: {what} after {minutes} without an acknowledgement)"
    step = min(total, 1 + (len(fired) if action == Escalation.Action.NEXT else min(len(fired), 1)))
    if waiting:
        due = min(t.due_at for t in waiting)
        return f"step {step} of {total}, {'next' if action == Escalation.Action.NEXT else 'call'} in {words.countdown(due - now)}"
    return f"ran out: nobody acknowledged (step {step} of {total} taken)"


def _events(deliveries: list[Delivery], timers: list[Escalation]) -> list[Event]:
    by_id = {d.id: d for d in deliveries}
    events: list[Event] = []
    for d in deliveries:
        events += _delivery_events(d)
    attempts = Attempt.objects.filter(delivery__in=deliveries).select_related("triggered_by")
    events += [_attempt_event(a, by_id[a.delivery_id]) for a in attempts]
    for e in StatusEvent.objects.filter(delivery__in=deliveries).order_by("received_at", "id"):
        events.append(_status_event(e, by_id[e.delivery_id]))
    replies = InboundMessage.objects.filter(acknowledged__in=deliveries).order_by("received_at")
    events += [
        Event(
            m.received_at,
            "reply",
            "←",
            pretty_number(m.from_number),
            f"replied “{m.body[:60]}”: {m.get_meaning_display()}",
        )
        for m in replies
    ]
    steps = (_timer_event(t, by_id) for t in timers)
    events += [step for step in steps if step is not None]
    return events


def _kind(d: Delivery) -> str:
    if d.kind == Delivery.Kind.NOTICE:
        return "notice"
    return "call" if d.channel == Channel.VOICE else "text"


def _delivery_events(d: Delivery) -> list[Event]:
    number, link = pretty_number(d.to_number), str(d.id)
    events = []
    if d.hold:
        why = d.get_hold_display().lower()
        events.append(
            Event(d.settled_at or d.created_at, "hold", "", number, f"{_kind(d)} held back: {why}", delivery_id=link)
        )
    if d.acknowledged_at:
        channel = "a keypress on the call" if d.ack_channel == Channel.VOICE else "a text reply"
        after = words.duration(d.acknowledged_at - d.created_at)
        events.append(
            Event(
                d.acknowledged_at,
                "ack",
                "←",
                pretty_number(d.acknowledged_by or d.to_number),
                f"acknowledged by {channel}, {after} after the text",
                delivery_id=link,
            )
        )
    return events


def _attempt_event(a: Attempt, d: Delivery) -> Event:
    number, link = pretty_number(d.to_number), str(d.id)
    label = a.get_outcome_display() if a.outcome else "in flight"
    outcome = label[:1].lower() + label[1:]
    if a.trigger == Attempt.Trigger.RECONCILE:
        return Event(
            a.started_at,
            "lookup",
            "",
            number,
            f"looked for the {_kind(d)} at Twilio: {outcome}",
            a.twilio_code,
            words.code_meaning(a.twilio_code),
            link,
        )
    detail = f" (HTTP {a.http_status}, {a.duration_ms} ms)" if a.http_status and a.duration_ms is not None else ""
    said = "" if a.twilio_code else _network_words(a)
    text = f"{_kind(d)}: {outcome}{detail}{said}"
    kind = _kind(d)
    if a.trigger == Attempt.Trigger.RESEND:
        who = a.triggered_by.get_username() if a.triggered_by else "an operator"
        text = f"resent by {who} (“{a.reason[:80]}”): {outcome}{detail}"
        kind = "resend"
    elif a.trigger == Attempt.Trigger.RETRY:
        text = f"{_kind(d)} retried: {outcome}{detail}"
    return Event(a.started_at, kind, "→", number, text, a.twilio_code, words.code_meaning(a.twilio_code), link)


def _network_words(a: Attempt) -> str:
    said = words.error_in_words(None, a.twilio_message) if a.twilio_message else ""
    return f"; {said}" if said and a.outcome not in (Outcome.ACCEPTED, "") else ""


_CALL_WORDS = {
    "initiated": "call placed",
    "ringing": "ringing",
    "in-progress": "answered",
    "completed": "call ended",
    "no-answer": "no answer",
    "busy": "busy",
    "failed": "call failed",
    "canceled": "call cancelled",
}


def _status_event(e: StatusEvent, d: Delivery) -> Event:
    number, link = pretty_number(d.to_number), str(d.id)
    status = e.message_status
    if status.startswith("gather:"):
        digits = status.removeprefix("gather:") or "none"
        meaning = "acknowledges" if digits == "1" else "not 1: does not acknowledge"
        return Event(e.received_at, "key", "←", number, f"pressed {digits} on the call ({meaning})", delivery_id=link)
    if d.channel == Channel.VOICE:
        said = _CALL_WORDS.get(status, status)
    else:
        said = f"Twilio reports the {_kind(d)} {status}"
    return Event(e.received_at, "status", "", number, said, e.error_code, words.code_meaning(e.error_code), link)


def _timer_event(t: Escalation, by_id: dict[UUID, Delivery]) -> Event | None:
    d = by_id.get(t.alert_id)
    number = pretty_number(d.to_number) if d else ""
    within = words.duration(timedelta(seconds=t.ack_within_seconds))
    if t.state == Escalation.State.FIRED:
        step = by_id.get(t.result_id) if t.result_id else None
        did = (
            f"calling {pretty_number(step.to_number)}"
            if step and step.channel == Channel.VOICE
            else f"texting the next person, {pretty_number(step.to_number)}"
            if step
            else "nobody left to try"
        )
        return Event(
            t.fired_at or t.due_at,
            "step",
            "",
            number,
            f"not acknowledged within {within}: {did}",
            delivery_id=str(step.id) if step else "",
        )
    if t.state == Escalation.State.CANCELLED:
        return Event(t.fired_at or t.due_at, "step", "", number, "escalation stopped: the alert was acknowledged")
    return None
