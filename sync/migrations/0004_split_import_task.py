"""The import task is two tasks now: the beat job's periodic task names the new one."""

from django.db import migrations

BEFORE = "sync.tasks.import_database"
AFTER = "sync.tasks.import_new_databases"


def rename(apps, schema_editor, old=BEFORE, new=AFTER):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(task=old, args="[]", kwargs="{}").update(task=new)


def rename_back(apps, schema_editor):
    rename(apps, schema_editor, old=AFTER, new=BEFORE)


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0003_secrets"),
        ("django_celery_beat", "0001_initial"),
    ]

    operations = [migrations.RunPython(rename, rename_back)]
