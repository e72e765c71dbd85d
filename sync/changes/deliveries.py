"""Queue the webhooks' delivery task: after a reflection that owed deliveries, or a re-send."""

import logging
import uuid

from sync.changes import publisher, task_names

logger = logging.getLogger(__name__)


def queue_delivery(database_id: int | None, countdown: float | None = None) -> bool:
    """Queue a delivery pass (of one database, or all); return whether the broker took it.

    A broker that fails loses nothing: the deliveries wait in the outbox, and the beat job
    "Deliver webhooks" finds them within half a minute.
    """
    try:
        publisher.publish(
            task_names.DELIVER, (), {"database_id": database_id}, str(uuid.uuid4()), countdown
        )
    except publisher.PUBLISH_ERRORS as error:
        logger.warning("webhook delivery of database %s not queued: %s", database_id, error)
        return False
    return True
