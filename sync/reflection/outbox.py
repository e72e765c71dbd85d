"""The webhooks' outbox: deliveries owed for a reflection's events, written in its transaction.

Written beside the events, a delivery is never lost between the commit and the queue: the
delivery task (sync.ops.webhooks) finds what is pending whenever it runs.
"""

from datetime import datetime

from django.db import connection

from sync.models import Webhook, WebhookDelivery
from sync.reflection.writes import array_literal

# One statement whatever the number of transactions and webhooks: each transaction's events
# (ids grouped by their position in the list given), owed to each active webhook of the
# database or of all, in the transactions' order.
OWE = (
    f"INSERT INTO {WebhookDelivery._meta.db_table} (webhook_id, database_id, event_ids, status,"
    " attempts, last_error, created_at, next_attempt_at)"
    " SELECT w.id, %(database)s, g.ids, 'pending', 0, '', %(now)s, %(now)s"
    " FROM (SELECT grp, array_agg(id ORDER BY id) AS ids"
    "       FROM unnest(%(ids)s::bigint[], %(groups)s::integer[]) AS u(id, grp) GROUP BY grp) g"
    f" CROSS JOIN {Webhook._meta.db_table} w"
    " WHERE w.active AND (w.database_id = %(database)s OR w.database_id IS NULL)"
    " ORDER BY g.grp, w.id"
)


def owe(database_id: int, groups: list[list[int]], now: datetime) -> int:
    """Owe each transaction's events to every active webhook of the database (or of all);
    return how many deliveries that makes."""
    if not groups:
        return 0
    ids = [event_id for group in groups for event_id in group]
    numbers = [number for number, group in enumerate(groups) for _ in group]
    with connection.cursor() as cursor:
        cursor.execute(
            OWE,
            {"database": database_id, "now": now, "ids": array_literal(ids),
             "groups": array_literal(numbers)},
        )  # fmt: skip
        return int(cursor.rowcount)
