"""The change feed's writer: each reflection's batch of events becomes events and deliveries.

A reflection leaves its events as one batch row (sync.reflection.events.write_batch). `record`
turns the batches of a database into ChangeEvent rows, owes each transaction's events to
every active webhook of the database or of all (the outbox the delivery task reads), and
deletes the batches, in one statement and one transaction: nothing is recorded twice or lost.
It runs on the webhooks queue before each delivery pass, off the reflection's path: a storm's
thousand event rows and their index entries cost the reflection nothing (bench/change_feed.py).
"""

import logging
from dataclasses import dataclass
from functools import partial

from django.db import DatabaseError, connection, transaction

from sync import metrics
from sync.models import ChangeEvent, EventBatch, Webhook, WebhookDelivery
from sync.reflection import signals
from sync.reflection.events import COLUMNS

logger = logging.getLogger(__name__)

EVENTS, BATCHES = ChangeEvent._meta.db_table, EventBatch._meta.db_table
DELIVERIES, WEBHOOKS = WebhookDelivery._meta.db_table, Webhook._meta.db_table

# One writer per database at a time, for the transaction: ids follow the batches' order.
LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('dbsync-feed:' || %(database)s, 0));"
# The batches taken, their rows as events (ids in the batches' order, then the rows'), each
# transaction's events (a reflection's unlogged ones are one group) owed to each webhook in
# that order, and what was written, by kind. A delivery is owed from when its events were
# recorded, so its lag counts the feed's turn too.
RECORD = (
    f"WITH taken AS (DELETE FROM {BATCHES} WHERE database_id = %(database)s"
    "  RETURNING id, run_id, recorded_at, rows),"
    f" written AS (INSERT INTO {EVENTS} (database_id, run_id, recorded_at, "
    + ", ".join(name for name, _ in COLUMNS)
    + ") SELECT %(database)s, b.run_id, b.recorded_at, "
    + ", ".join(f"(r->>{i})::{kind}" for i, (_, kind) in enumerate(COLUMNS))
    + " FROM taken b CROSS JOIN LATERAL jsonb_array_elements(b.rows::jsonb) WITH ORDINALITY"
    "  AS e(r, n) ORDER BY b.id, e.n RETURNING id, kind, xid, recorded_at),"
    f" owed AS (INSERT INTO {DELIVERIES} (webhook_id, database_id, event_ids, status, attempts,"
    "  last_error, created_at, next_attempt_at)"
    "  SELECT w.id, %(database)s, array_agg(e.id ORDER BY e.id), 'pending', 0, '',"
    "  e.recorded_at, e.recorded_at"
    f"  FROM written e CROSS JOIN {WEBHOOKS} w"
    "  WHERE w.active AND (w.database_id = %(database)s OR w.database_id IS NULL)"
    "  GROUP BY e.recorded_at, e.xid, w.id ORDER BY min(e.id), w.id RETURNING 1)"
    " SELECT kind, count(*), (SELECT count(*) FROM owed) FROM written GROUP BY kind"
)


@dataclass(frozen=True)
class Recorded:
    """What the feed wrote: events by kind, and the deliveries owed for them."""

    kinds: dict[str, int]
    deliveries: int

    @property
    def events(self) -> int:
        return sum(self.kinds.values())


def record(database_id: int | None = None) -> Recorded:
    """Record the waiting batches of one database (or of all) as events and deliveries.

    Over all databases, one whose batches cannot be recorded is logged and left waiting (the
    metrics show it): the others' events and webhooks do not wait behind it.
    """
    if database_id is not None:
        return _record(database_id)
    waiting = EventBatch.objects.order_by().values_list("database_id", flat=True).distinct()
    kinds: dict[str, int] = {}
    deliveries = 0
    for waiting_id in list(waiting):
        try:
            recorded = _record(waiting_id)
        except DatabaseError as error:
            logger.error(
                "change feed: the events of database %s not recorded: %s", waiting_id, error
            )
            continue
        for kind, count in recorded.kinds.items():
            kinds[kind] = kinds.get(kind, 0) + count
        deliveries += recorded.deliveries
    return Recorded(kinds=kinds, deliveries=deliveries)


def _record(database_id: int) -> Recorded:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(LOCK + RECORD, {"database": database_id})
        rows = cursor.fetchall()
        recorded = Recorded(
            kinds={kind: count for kind, count, _ in rows},
            deliveries=rows[0][2] if rows else 0,
        )
        if rows:
            transaction.on_commit(partial(_announce, database_id, recorded))
    return recorded


def _announce(database_id: int, recorded: Recorded) -> None:
    """Count the events, and tell the pages that show them (the push channel)."""
    for kind, count in recorded.kinds.items():
        metrics.CHANGE_EVENTS.labels(kind).inc(count)
    signals.reflected.send(sender=ChangeEvent, database_id=database_id)
