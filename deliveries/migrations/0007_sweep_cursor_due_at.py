"""The sweeper's own cursor, `due_at`, instead of `updated_at`. Rows that were waiting for a task
when this runs are due from their last update, as the old sweeper read them; an ambiguous row whose
reconcile had already given up (SEND_MAX_ATTEMPTS failed look-ups) is left with nothing due."""

from django.conf import settings
from django.db import migrations, models
from django.db.models import Count, F, Q


def backfill(apps, schema_editor):
    Delivery = apps.get_model("deliveries", "Delivery")
    Delivery.objects.filter(status="pending").update(due_at=F("updated_at"))
    waiting = (
        Delivery.objects.filter(status="ambiguous")
        .annotate(failed=Count("attempts", filter=Q(attempts__outcome="reconcile_failed")))
        .filter(failed__lt=settings.SEND_MAX_ATTEMPTS)
        .values_list("id", flat=True)
    )
    Delivery.objects.filter(id__in=list(waiting)).update(due_at=F("updated_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("deliveries", "0006_hold_filter_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="delivery",
            name="due_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(
                condition=models.Q(("due_at__isnull", False)), fields=["status", "due_at"], name="delivery_status_due"
            ),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
