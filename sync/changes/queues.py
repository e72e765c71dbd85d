"""Which Celery queue each task goes to: `interactive` for what a person or a change waits on,
`bulk` for the periodic work over every database, `webhooks` for deliveries to receivers, whose
slowness must hold up nothing else (Celery's task_routes calls route_task)."""

from typing import Any

from sync.changes import task_names

INTERACTIVE = "interactive"
BULK = "bulk"
WEBHOOKS = "webhooks"
QUEUES = (INTERACTIVE, BULK, WEBHOOKS)

# Reflections nobody waits on: the periodic renewal and the import of new databases. Every
# other trigger (a list, a page, an on-the-fly read, the API, the admin, the listener, a change the
# poll found) is a person waiting, or a change that must show within its promised delay.
BULK_TRIGGERS = frozenset({"renewal", "import"})
BULK_TASKS = frozenset(
    {
        task_names.IMPORT_NEW,
        task_names.IMPORT_ONE,
        task_names.IMPORT_BEFORE_SPLIT,
        task_names.RENEW,
        task_names.POLL,
        task_names.PURGE,
    }
)


def queue_of(task: str, kwargs: dict[str, Any] | None) -> str:
    """Return the queue of a task published with these keyword arguments."""
    if task == task_names.REFLECT:
        trigger = (kwargs or {}).get("trigger", "")
        return BULK if trigger in BULK_TRIGGERS else INTERACTIVE
    if task == task_names.DELIVER:
        return WEBHOOKS
    return BULK if task in BULK_TASKS else INTERACTIVE


def route_task(
    name: str, args: Any, kwargs: dict[str, Any] | None, options: Any, **_: Any
) -> dict[str, str]:
    """Celery router: send each task to its queue (retries go back where they came from)."""
    return {"queue": queue_of(name, kwargs)}
