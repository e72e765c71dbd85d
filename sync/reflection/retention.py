"""Purge soft-deleted objects, reflection history, change events and webhook deliveries older than
the retention period."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sync.models import ChangeEvent, ReflectionRun, Schema, Table, WebhookDelivery


def purge_expired(days: int | None = None) -> dict[str, int]:
    """Delete what was dropped, or recorded, more than `days` ago; return how many of each."""
    cutoff = timezone.now() - timedelta(days=days or settings.SYNC_RETENTION_DAYS)
    with transaction.atomic():
        # Events first: a purged table's events are older than its drop, so all go together.
        events, _ = ChangeEvent.objects.filter(recorded_at__lt=cutoff).delete()
        deliveries, _ = WebhookDelivery.objects.filter(created_at__lt=cutoff).delete()
        tables, _ = Table.objects.filter(dropped_at__lt=cutoff).delete()
        # A schema still holding a table (dropped later, or live again) waits for it.
        schemas, _ = (
            Schema.objects.filter(dropped_at__lt=cutoff).exclude(tables__isnull=False).delete()
        )
        runs, _ = ReflectionRun.objects.filter(started_at__lt=cutoff).delete()
    return {
        "tables": tables, "schemas": schemas, "runs": runs, "events": events,
        "deliveries": deliveries,
    }  # fmt: skip
