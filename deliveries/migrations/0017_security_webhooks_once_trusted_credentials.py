"""Webhooks act once (inbound messages per MessageSid, status callbacks per status, a keypress per
call), credentials record whether they came from the Secrets Manager, and inbound messages record wrong
codes and withheld answers; escalation timers record when their armed task comes.

Existing credentials start as not read from the Secrets Manager: a credential pasted into a rule cannot be
told apart from one read with a JWT after the fact. The next `run` call that reads the secret marks it.
Rows received twice before this migration are kept; the later copies are marked as repeats (the whole
form stays in `payload`), so that the unique keys can hold."""

from django.db import migrations, models
from django.db.models import Count


def mark_repeats(apps, schema_editor):
    StatusEvent = apps.get_model("deliveries", "StatusEvent")
    InboundMessage = apps.get_model("deliveries", "InboundMessage")
    repeated = StatusEvent.objects.values("delivery_id", "message_status").annotate(n=Count("id")).filter(n__gt=1)
    for group in repeated:
        rows = StatusEvent.objects.filter(delivery_id=group["delivery_id"], message_status=group["message_status"])
        for number, event in enumerate(rows.order_by("id")[1:], start=2):
            if event.message_status.startswith("gather:"):
                continue
            event.message_status = f"{event.message_status[:20]} (repeat {number})"
            event.save(update_fields=["message_status"])
    keypresses = (
        StatusEvent.objects.filter(message_status__startswith="gather:")
        .values("message_sid")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    for group in keypresses:
        rows = StatusEvent.objects.filter(message_sid=group["message_sid"], message_status__startswith="gather:")
        for event in rows.order_by("id")[1:]:
            event.message_status = f"repeat {event.message_status}"[:32]
            event.save(update_fields=["message_status"])
    inbound = (
        InboundMessage.objects.exclude(message_sid="")
        .values("organization_id", "message_sid")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    for group in inbound:
        rows = InboundMessage.objects.filter(organization_id=group["organization_id"], message_sid=group["message_sid"])
        rows.exclude(id=rows.order_by("id")[0].id).update(message_sid="")


class Migration(migrations.Migration):
    dependencies = [
        ("deliveries", "0016_loop_events_approvals"),
    ]

    operations = [
        migrations.AddField(
            model_name="escalation",
            name="armed_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="credential",
            name="from_secrets_manager",
            field=models.BooleanField(
                default=False,
                help_text="Read from the organisation's Secrets Manager (not pasted into a rule): may verify inbound texts.",
                verbose_name="read from the Secrets Manager",
            ),
        ),
        migrations.AddField(
            model_name="inboundmessage",
            name="withheld",
            field=models.CharField(
                blank=True,
                choices=[
                    ("not_alerted", "The organisation has not alerted this number lately"),
                    ("reply_limit", "This number's answers per hour are used up"),
                ],
                default="",
                max_length=16,
                verbose_name="answer withheld because",
            ),
        ),
        migrations.AddField(
            model_name="inboundmessage",
            name="wrong_codes",
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AlterField(
            model_name="delivery",
            name="hold",
            field=models.CharField(
                blank=True,
                choices=[
                    ("opted_out", "Recipient opted out"),
                    ("duplicate", "Same text to the same recipient shortly before"),
                    ("recipient_limit", "Recipient's limit reached"),
                    ("org_limit", "Organisation's limit reached"),
                    ("acknowledged", "The alert was acknowledged first"),
                    ("call_refused", "Not an ordinary phone, or a country calls may not reach"),
                ],
                max_length=16,
                verbose_name="held back because",
            ),
        ),
        migrations.AlterField(
            model_name="inboundmessage",
            name="meaning",
            field=models.CharField(
                choices=[
                    ("stop", "Opt-out (STOP)"),
                    ("start", "Opt-in (START)"),
                    ("help", "Help"),
                    ("ack", "Acknowledgement"),
                    ("unmatched", "No code in it"),
                    ("wrong_code", "Wrong code"),
                    ("too_many_codes", "Too many codes in one reply"),
                    ("code_locked", "Refused: too many wrong codes lately"),
                ],
                max_length=16,
            ),
        ),
        migrations.RunPython(mark_repeats, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="inboundmessage",
            constraint=models.UniqueConstraint(
                condition=models.Q(("message_sid", ""), _negated=True),
                fields=("organization", "message_sid"),
                name="inbound_once_per_message_sid",
            ),
        ),
        migrations.AddConstraint(
            model_name="statusevent",
            constraint=models.UniqueConstraint(
                condition=models.Q(("message_status__startswith", "gather:"), _negated=True),
                fields=("delivery", "message_status"),
                name="status_event_once_per_status",
            ),
        ),
        migrations.AddConstraint(
            model_name="statusevent",
            constraint=models.UniqueConstraint(
                condition=models.Q(("message_status__startswith", "gather:")),
                fields=("message_sid",),
                name="keypress_once_per_call",
            ),
        ),
    ]
