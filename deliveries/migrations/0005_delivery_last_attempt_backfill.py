"""Fill Delivery.last_trigger / last_outcome (added in 0002) from each delivery's latest attempt,
for deliveries sent before those columns existed. One UPDATE; the latest attempt's number is the
delivery's attempt_count."""

from __future__ import annotations

from typing import Any

from django.db import migrations
from django.db.models import OuterRef, Subquery, Value
from django.db.models.functions import Coalesce


def backfill(apps: Any, schema_editor: Any) -> None:
    Attempt = apps.get_model("deliveries", "Attempt")
    Delivery = apps.get_model("deliveries", "Delivery")
    latest = Attempt.objects.filter(delivery=OuterRef("pk"), number=OuterRef("attempt_count"))
    Delivery.objects.filter(attempt_count__gt=0).update(
        last_trigger=Coalesce(Subquery(latest.values("trigger")[:1]), Value("")),
        last_outcome=Coalesce(Subquery(latest.values("outcome")[:1]), Value("")),
    )


class Migration(migrations.Migration):
    dependencies = [("deliveries", "0004_audit_desk_roles")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
