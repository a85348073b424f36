"""The five roles of docs/api.md, created once; later migrations never rename them."""

from django.db import migrations

ROLES = {
    "admin": "Manages users, roles and MFA; may do everything.",
    "security_officer": "Manages API keys, runs incidents and the compliance checklist.",
    "ml_engineer": "Uploads, stages and predicts with model versions.",
    "auditor": "Reads and exports the audit trail and compliance reports.",
    "api_client": "A service that calls predict on the models it is granted.",
}


def create_roles(apps, schema_editor):
    Role = apps.get_model("accounts", "Role")
    for name, description in ROLES.items():
        Role.objects.update_or_create(name=name, defaults={"description": description})


def remove_roles(apps, schema_editor):
    apps.get_model("accounts", "Role").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [migrations.RunPython(create_roles, remove_roles)]
