"""No index of every table's parent: the live partitions' own index serves every read."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('sync', '0007_partitions'),
    ]

    operations = [
        migrations.AlterField(
            model_name='table',
            name='parent',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='partitions', to='sync.table'),
        ),
    ]
