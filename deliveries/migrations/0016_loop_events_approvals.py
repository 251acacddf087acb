"""Closing the loop in LimaCharlie: the organisation's webhook adapter, the outbox of events for it,
approvals, and the rule's context on an alert; both desk roles may view the new records."""

from typing import Any

import deliveries.fields
import django.db.models.deletion
import uuid
from django.contrib.auth.management import create_permissions
from django.db import migrations, models

_VIEW = ["view_webhookadapter", "view_outboundevent", "view_approval"]


def grant_views(apps: Any, schema_editor: Any = None) -> None:
    app_config = apps.get_app_config("deliveries")
    if not getattr(app_config, "models_module", None):
        app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = list(Permission.objects.filter(content_type__app_label="deliveries", codename__in=_VIEW))
    for group in Group.objects.filter(name__in=["SOC lead", "Operator"]):
        group.permissions.add(*permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("deliveries", "0015_sends_counted_and_call_holds"),
    ]

    operations = [
        migrations.AddField(
            model_name="alertrequest",
            name="context",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="alertrequest",
            name="event_kinds",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.CreateModel(
            name="WebhookAdapter",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("secret", deliveries.fields.EncryptedTextField(blank=True)),
                (
                    "hooks_url",
                    models.CharField(
                        blank=True,
                        help_text="https://<the organisation's hook domain>",
                        max_length=255,
                        verbose_name="hook base URL",
                    ),
                ),
                ("installation_key", models.CharField(blank=True, max_length=64, verbose_name="installation key id")),
                (
                    "ready_at",
                    models.DateTimeField(
                        blank=True, help_text="When the adapter was last made or found whole.", null=True
                    ),
                ),
                ("last_error", models.CharField(blank=True, max_length=255)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "organization",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="webhook_adapter",
                        to="deliveries.organization",
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="Approval",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("question", models.TextField()),
                ("code", models.CharField(max_length=8)),
                ("approved_content", models.JSONField(blank=True, null=True)),
                ("denied_content", models.JSONField(blank=True, null=True)),
                ("timeout_seconds", models.PositiveIntegerField()),
                (
                    "timeout_choice",
                    models.CharField(choices=[("approved", "Approved"), ("denied", "Denied")], max_length=8),
                ),
                ("due_at", models.DateTimeField(help_text="When the timeout decides.")),
                (
                    "decision",
                    models.CharField(
                        blank=True, choices=[("approved", "Approved"), ("denied", "Denied")], max_length=8
                    ),
                ),
                ("decided_at", models.DateTimeField(blank=True, null=True)),
                (
                    "decided_by",
                    models.CharField(
                        blank=True, help_text="A number, or 'timeout'.", max_length=16, verbose_name="decided by"
                    ),
                ),
                ("decided_channel", models.CharField(blank=True, help_text="sms, voice or timeout.", max_length=8)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "alert",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="approval",
                        to="deliveries.alertrequest",
                    ),
                ),
                (
                    "decided_delivery",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="deliveries.delivery",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(
                        condition=models.Q(("decided_at__isnull", True)), fields=["due_at"], name="approval_open_due"
                    ),
                    models.Index(
                        condition=models.Q(("decided_at__isnull", True)), fields=["code"], name="approval_open_code"
                    ),
                ],
            },
        ),
        migrations.CreateModel(
            name="OutboundEvent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("delivered", "Delivered"),
                            ("undelivered", "Undelivered"),
                            ("failed", "Failed"),
                            ("acknowledged", "Acknowledged"),
                            ("escalated", "Escalated"),
                            ("unacknowledged", "Unacknowledged"),
                            ("approved", "Approved"),
                            ("denied", "Denied"),
                        ],
                        max_length=16,
                    ),
                ),
                ("event_id", models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                ("payload", models.JSONField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("due_at", models.DateTimeField(blank=True, null=True)),
                ("claimed_at", models.DateTimeField(blank=True, null=True)),
                ("claim", models.UUIDField(blank=True, null=True)),
                ("sent_at", models.DateTimeField(blank=True, null=True)),
                ("attempts", models.PositiveIntegerField(default=0)),
                ("last_error", models.CharField(blank=True, max_length=255)),
                (
                    "alert",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="outbound_events",
                        to="deliveries.alertrequest",
                    ),
                ),
                (
                    "organization",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="outbound_events",
                        to="deliveries.organization",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at"],
                "indexes": [
                    models.Index(
                        condition=models.Q(("sent_at__isnull", True)),
                        fields=["organization", "due_at"],
                        name="event_org_due",
                    ),
                    models.Index(condition=models.Q(("sent_at__isnull", True)), fields=["due_at"], name="event_due"),
                ],
            },
        ),
        migrations.RunPython(grant_views, migrations.RunPython.noop),
    ]
