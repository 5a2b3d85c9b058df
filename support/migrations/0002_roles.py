"""The roles, as groups with permissions.

Support: sees usage, spend, budgets, users and error details; reads conversation text only
after recording a reason (`read_with_reason`); sees the dashboard.
Admin: every permission (superusers have them all anyway).
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

SUPPORT_PERMISSIONS = [
    ("billing", "view_usagerecord"),
    ("billing", "view_dailyspend"),
    ("billing", "view_reservation"),
    ("billing", "view_userbudget"),
    ("billing", "view_catalogmodel"),
    ("auth", "view_user"),
    ("conversations", "view_conversation"),
    ("conversations", "view_message"),
    ("support", "view_dashboard"),
    ("support", "read_with_reason"),
]


def create_roles(apps, schema_editor):
    # Permissions are normally made after all migrations: make them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    support, _ = Group.objects.get_or_create(name="Support")
    support.permissions.set(
        [
            Permission.objects.get(content_type__app_label=app, codename=codename)
            for app, codename in SUPPORT_PERMISSIONS
        ]
    )
    admin, _ = Group.objects.get_or_create(name="Admin")
    admin.permissions.set(Permission.objects.all())


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["Support", "Admin"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("support", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("billing", "0006_service_caps"),
        ("conversations", "0008_message_context_tokens"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
