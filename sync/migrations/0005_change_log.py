"""The watch's change log: its position on each database, how it signals, and history rows that
stand for a run of unchanged reflections; tables without a database constraint on their schema."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0004_split_import_task"),
    ]

    operations = [
        migrations.AlterField(
            model_name="table",
            name="schema",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="tables",
                to="sync.schema",
            ),
        ),
        migrations.AlterField(
            model_name="reflectionrun",
            name="trigger",
            field=models.CharField(
                choices=[
                    ("list", "List"),
                    ("live", "Live"),
                    ("api", "Api"),
                    ("admin", "Admin"),
                    ("page", "Page"),
                    ("listener", "Listener"),
                    ("reconnect", "Reconnect"),
                    ("poll", "Poll"),
                    ("renewal", "Renewal"),
                    ("import", "Import"),
                    ("command", "Command"),
                ],
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="database",
            name="watch_signal",
            field=models.CharField(blank=True, max_length=8),
        ),
        migrations.AddField(
            model_name="database",
            name="log_position",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="database",
            name="log_snapshot",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="database",
            name="log_trimmed",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="reflectionrun",
            name="targeted",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="reflectionrun",
            name="repeats",
            field=models.PositiveIntegerField(default=1),
        ),
        migrations.AddField(
            model_name="reflectionrun",
            name="first_started_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
