"""Encrypt database URLs at rest; grants of databases to groups; the superuser-role flag."""

import django.db.models.deletion
from django.db import migrations, models


def encrypt_urls(apps, schema_editor):
    """Encrypt each URL; hide its password in errors recorded before redaction knew its form."""
    from sync import encryption
    from sync.remote.credentials import redact

    Database = apps.get_model("sync", "Database")
    ReflectionRun = apps.get_model("sync", "ReflectionRun")
    for database in Database.objects.all():
        database.encrypted_url = encryption.encrypt(database.url)
        database.last_error = redact(database.last_error, database.url)
        database.save(update_fields=["encrypted_url", "last_error"])
        for run in ReflectionRun.objects.filter(database=database).exclude(error=""):
            run.error = redact(run.error, database.url)
            run.save(update_fields=["error"])


def decrypt_urls(apps, schema_editor):
    from sync import encryption

    Database = apps.get_model("sync", "Database")
    for database in Database.objects.all():
        database.url = encryption.decrypt(
            database.encrypted_url, f"the URL of database {database.name!r}"
        )
        database.save(update_fields=["url"])


class Migration(migrations.Migration):

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("sync", "0002_watch"),
    ]

    operations = [
        migrations.AddField(
            model_name="database",
            name="encrypted_url",
            field=models.TextField(default=""),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="database", name="url", field=models.TextField(blank=True, default="")
        ),
        migrations.RunPython(encrypt_urls, decrypt_urls),
        migrations.RemoveField(model_name="database", name="url"),
        migrations.AddField(
            model_name="database",
            name="role_is_superuser",
            field=models.BooleanField(blank=True, null=True),
        ),
        migrations.CreateModel(
            name="DatabaseGrant",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("records", models.BooleanField(default=False, help_text="Members may also read the rows of its tables and views.")),
                ("database", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="grants", to="sync.database")),
                ("group", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="database_grants", to="auth.group")),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("database", "group"), name="one_grant_per_group")],
            },
        ),
    ]
