import deliveries.fields
import django.db.models.deletion
from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations, models
from django.utils.crypto import salted_hmac


def bind_existing_deliveries(apps, schema_editor):
    """Each organisation's stored credential becomes a Credential row, and its deliveries are bound to
    it (the only credential they can have been sent with). Same fingerprint as services.credentials."""
    Organization = apps.get_model("deliveries", "Organization")
    Credential = apps.get_model("deliveries", "Credential")
    Delivery = apps.get_model("deliveries", "Delivery")
    for org in Organization.objects.exclude(twilio_auth_token="").exclude(twilio_account_sid=""):
        value = f"{org.twilio_account_sid}/{org.twilio_auth_token}"
        credential = Credential.objects.create(
            organization=org,
            account_sid=org.twilio_account_sid,
            auth_token=org.twilio_auth_token,
            fingerprint=salted_hmac("ext-twilio.credential", value, algorithm="sha256").hexdigest(),
            last_used_at=org.credential_refreshed_at or org.updated_at,
        )
        Delivery.objects.filter(organization=org).update(credential=credential)


def let_both_roles_view_credentials(apps, schema_editor):
    """The desk shows which Twilio account a delivery went through (never its token): both roles see it."""
    app_config = apps.get_app_config("deliveries")
    if not getattr(app_config, "models_module", None):
        app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    Permission = apps.get_model("auth", "Permission")
    view = Permission.objects.get(content_type__app_label="deliveries", codename="view_credential")
    for group in apps.get_model("auth", "Group").objects.filter(name__in=["SOC lead", "Operator"]):
        group.permissions.add(view)


class Migration(migrations.Migration):
    dependencies = [
        ("deliveries", "0007_sweep_cursor_due_at"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="delivery",
            name="resend_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="delivery",
            name="resend_reason",
            field=models.TextField(blank=True),
        ),
        migrations.CreateModel(
            name="Credential",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("account_sid", models.CharField(max_length=34)),
                ("auth_token", deliveries.fields.EncryptedTextField(blank=True)),
                ("fingerprint", models.CharField(max_length=64)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("last_used_at", models.DateTimeField(help_text="When a run call last brought it (to the minute).")),
                ("rejected_at", models.DateTimeField(blank=True, null=True)),
                (
                    "organization",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="credentials",
                        to="deliveries.organization",
                    ),
                ),
            ],
        ),
        migrations.AddField(
            model_name="delivery",
            name="credential",
            field=models.ForeignKey(
                blank=True,
                help_text="The Twilio credential it was accepted with, and is sent, reconciled and checked with.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="deliveries",
                to="deliveries.credential",
            ),
        ),
        migrations.AddIndex(
            model_name="credential",
            index=models.Index(fields=["account_sid"], name="credential_account"),
        ),
        migrations.AddConstraint(
            model_name="credential",
            constraint=models.UniqueConstraint(fields=("organization", "fingerprint"), name="credential_once_per_org"),
        ),
        migrations.RunPython(bind_existing_deliveries, migrations.RunPython.noop),
        migrations.RunPython(let_both_roles_view_credentials, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name="organization",
            name="credential_refreshed_at",
        ),
        migrations.RemoveField(
            model_name="organization",
            name="twilio_account_sid",
        ),
        migrations.RemoveField(
            model_name="organization",
            name="twilio_auth_token",
        ),
    ]
