"""Existing models get their creator as owner; every stored version gets the upload's
analysis once (apps.registry.scanning.artifacts_scan): what it imports is recorded, and a
version that imports what is not allowed, or fails its integrity check, is quarantined."""

from django.db import migrations


def creators_own(apps, schema_editor):
    RegisteredModel = apps.get_model("registry", "RegisteredModel")
    for model in RegisteredModel.objects.exclude(created_by=None):
        model.owners.add(model.created_by_id)


def scan(apps, schema_editor):
    if not apps.get_model("registry", "ModelVersion").objects.exists():
        return
    # The live service on purpose: the scan decrypts with the deployment's master keys and
    # audits each quarantine exactly as `manage.py artifacts_scan --quarantine` does.
    from apps.registry.scanning import artifacts_scan

    artifacts_scan(quarantine=True)


class Migration(migrations.Migration):
    dependencies = [("registry", "0005_owners_trust_quarantine")]

    operations = [
        migrations.RunPython(creators_own, migrations.RunPython.noop),
        migrations.RunPython(scan, migrations.RunPython.noop),
    ]
