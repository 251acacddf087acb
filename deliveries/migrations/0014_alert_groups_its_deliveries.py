"""A delivery names its alert (the accepted `run` call) by a foreign key, instead of sharing its call's
idempotency key (with a ":call" suffix for a call step). De-duplication moves to the alert: one text
and one call per recipient of an alert, one acknowledgement notice per recipient."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def link_alerts(apps, schema_editor):  # type: ignore[no-untyped-def]
    Delivery = apps.get_model("deliveries", "Delivery")
    AlertRequest = apps.get_model("deliveries", "AlertRequest")
    # Texts: the run call of the same organisation and key.
    Delivery.objects.filter(kind="alert", channel="sms").update(
        alert=Subquery(
            AlertRequest.objects.filter(
                organization_id=OuterRef("organization_id"), idempotency_key=OuterRef("idempotency_key")
            ).values("id")[:1]
        )
    )
    # Calls: the alert of the text they escalate, and its key without the ":call" suffix.
    escalated = Delivery.objects.filter(id=OuterRef("escalates_id"))
    Delivery.objects.filter(channel="voice", escalates__isnull=False).update(
        alert=Subquery(escalated.values("alert_id")[:1]),
        idempotency_key=Subquery(escalated.values("idempotency_key")[:1]),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("deliveries", "0013_flood_summaries_indexed_while_waiting"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="delivery",
            name="delivery_once_per_key_and_recipient",
        ),
        migrations.AddField(
            model_name="delivery",
            name="alert",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="deliveries",
                to="deliveries.alertrequest",
            ),
        ),
        migrations.AlterField(
            model_name="delivery",
            name="idempotency_key",
            field=models.CharField(blank=True, max_length=255),
        ),
        migrations.RunPython(link_alerts, migrations.RunPython.noop, elidable=True),
        migrations.AddConstraint(
            model_name="delivery",
            constraint=models.UniqueConstraint(
                condition=models.Q(("kind", "alert")),
                fields=("alert", "to_number", "channel"),
                name="delivery_once_per_alert_recipient_channel",
            ),
        ),
        migrations.AddConstraint(
            model_name="delivery",
            constraint=models.UniqueConstraint(
                condition=models.Q(("kind", "notice")),
                fields=("alert", "to_number"),
                name="notice_once_per_alert_recipient",
            ),
        ),
    ]
