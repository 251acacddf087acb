"""The audit desk's two roles, as groups. A person gets a role by being added to one (see README).

The permission lists are frozen here on purpose: a later change to who may do what is a new
migration, so that every deployment's groups can be traced to one.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.management import create_permissions
from django.db import migrations

SOC_LEAD = "SOC lead"
OPERATOR = "Operator"

# View-only on everything the desk shows: deliveries, attempts, status events, opt-outs, error
# reports, organisations (whose Twilio token the admin never shows).
_VIEW = [
    ("deliveries", "view_delivery"),
    ("deliveries", "view_attempt"),
    ("deliveries", "view_statusevent"),
    ("deliveries", "view_optout"),
    ("deliveries", "view_errorreport"),
    ("deliveries", "view_organization"),
]
ROLES = {
    SOC_LEAD: _VIEW,
    OPERATOR: [*_VIEW, ("deliveries", "resend_delivery"), ("deliveries", "clear_optout")],
}


def create_roles(apps: Any, schema_editor: Any = None) -> None:
    # Permissions are normally created after all migrations ran (post_migrate); on a fresh database
    # they do not exist yet, so create this app's now.
    app_config = apps.get_app_config("deliveries")
    # create_permissions skips an app without models_module, which a migration-state stub lacks.
    if not getattr(app_config, "models_module", None):
        app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        permissions = [
            Permission.objects.get(content_type__app_label=app, codename=codename) for app, codename in codenames
        ]
        group.permissions.add(*permissions)


def remove_roles(apps: Any, schema_editor: Any) -> None:
    apps.get_model("auth", "Group").objects.filter(name__in=list(ROLES)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("deliveries", "0003_admin_indexes_and_permissions"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
