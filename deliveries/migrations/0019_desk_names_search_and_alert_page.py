"""The desk answers from what a SOC lead holds.

- Organisations get a name (LimaCharlie's) and a label (the desk's own, which wins).
- The search box finds a delivery by its text (host, detection words), investigation id, rule (ident)
  and acknowledgement code: one trigram index (pg_trgm, GIN) over those columns, upper-cased, on
  PostgreSQL. Creating the extension needs a superuser (or a database owner where pg_trgm is a trusted
  extension, PostgreSQL 13+); docs/audit-desk.md says so. SQLite has no such index: the search there is a
  plain substring match. The index is built concurrently, so the intake goes on meanwhile (atomic=False);
  it is not part of the model state, whose indexes are plain B-trees every backend can build.
- Both roles may see the alert page (AlertRequest); operators may edit an organisation's label.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.management import create_permissions
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations, models

# The expression deliveries.selectors.search_text builds, spelt out: an index expression must match the
# query's exactly for PostgreSQL to use it.
SEARCH_INDEX = "delivery_search_trgm"
SEARCH_EXPRESSION = "UPPER(body || ' ' || inv_id || ' ' || ident || ' ' || ack_code)"


class TrigramExtensionKept(TrigramExtension):
    """CREATE EXTENSION pg_trgm on PostgreSQL (nothing elsewhere). Migrating back leaves it installed:
    other objects in the database may use it, and an unused extension costs nothing."""

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        return


def create_search_index(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {SEARCH_INDEX} ON deliveries_delivery "
        f"USING gin (({SEARCH_EXPRESSION}) gin_trgm_ops)"
    )


def drop_search_index(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {SEARCH_INDEX}")


def grant(apps: Any, schema_editor: Any = None) -> None:
    app_config = apps.get_app_config("deliveries")
    if not getattr(app_config, "models_module", None):
        app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    view = Permission.objects.get(content_type__app_label="deliveries", codename="view_alertrequest")
    for group in Group.objects.filter(name__in=["SOC lead", "Operator"]):
        group.permissions.add(view)
    label = Permission.objects.get(content_type__app_label="deliveries", codename="change_organization")
    for group in Group.objects.filter(name="Operator"):
        group.permissions.add(label)


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("deliveries", "0018_calls_holds_together"),
    ]

    operations = [
        migrations.AddField(
            model_name="organization",
            name="name",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name="organization",
            name="label",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AlterModelOptions(name="organization", options={"verbose_name": "organisation"}),
        migrations.AlterModelOptions(name="alertrequest", options={"verbose_name": "alert"}),
        TrigramExtensionKept(),
        migrations.RunPython(create_search_index, drop_search_index),
        migrations.RunPython(grant, migrations.RunPython.noop),
    ]
