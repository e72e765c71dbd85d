"""The webhooks' outbox: deliveries owed for a reflection's events, written in its transaction.

Written beside the events, a delivery is never lost between the commit and the queue: the
delivery task (sync.ops.webhooks) finds what is pending whenever it runs.
"""

from datetime import datetime

from django.db.models import Q

from sync.models import Webhook, WebhookDelivery


def owe(database_id: int, groups: list[list[int]], now: datetime) -> int:
    """Owe each transaction's events to every active webhook of the database; return how many
    deliveries that makes (one query when no webhook listens)."""
    if not groups:
        return 0
    webhooks = Webhook.objects.filter(Q(database_id=database_id) | Q(database__isnull=True))
    hooks = list(webhooks.filter(active=True).values_list("id", flat=True))
    deliveries = [
        WebhookDelivery(
            webhook_id=hook,
            database_id=database_id,
            event_ids=ids,
            created_at=now,
            next_attempt_at=now,
        )
        for ids in groups
        for hook in hooks
    ]
    WebhookDelivery.objects.bulk_create(deliveries)
    return len(deliveries)
