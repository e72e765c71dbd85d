"""Purge soft-deleted objects and reflection history older than the retention period."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sync.models import ReflectionRun, Schema, Table


def purge_expired(days: int | None = None) -> dict[str, int]:
    """Delete what was dropped, or recorded, more than `days` ago; return how many of each."""
    cutoff = timezone.now() - timedelta(days=days or settings.SYNC_RETENTION_DAYS)
    with transaction.atomic():
        tables, _ = Table.objects.filter(dropped_at__lt=cutoff).delete()
        # A schema still holding a table (dropped later, or live again) waits for it.
        schemas, _ = (
            Schema.objects.filter(dropped_at__lt=cutoff).exclude(tables__isnull=False).delete()
        )
        runs, _ = ReflectionRun.objects.filter(started_at__lt=cutoff).delete()
    return {"tables": tables, "schemas": schemas, "runs": runs}
