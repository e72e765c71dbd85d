"""Partitions know their parent; names sort in a natural, case-insensitive order."""

import django.db.models.deletion
from django.contrib.postgres.operations import CreateCollation
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('sync', '0006_change_events'),
    ]

    operations = [
        # "item2" before "Item10", "authors" before "Orders": ICU's numeric, case-blind order.
        CreateCollation(
            "dbsync_natural", provider="icu", locale="und-u-kn-true-ks-level2", deterministic=False
        ),
        migrations.AddField(
            model_name='table',
            name='parent',
            field=models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='partitions', to='sync.table'),
        ),
        migrations.AddIndex(
            model_name='table',
            index=models.Index(condition=models.Q(('dropped_at__isnull', True), ('parent__isnull', False)), fields=['parent'], name='table_live_partitions'),
        ),
    ]
