"""State and progress of a queued task, as its worker reported them to the result backend."""

import logging
from dataclasses import dataclass
from typing import Any

from celery import current_app
from redis.exceptions import RedisError

from sync.breaker import REDIS_BREAKER
from sync.exceptions import SyncError, UnknownTask

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskProgress:
    id: str
    # PENDING (queued, or unknown: reflections keep no result), STARTED, PROGRESS, SUCCESS,
    # FAILURE, RETRY.
    state: str
    done: int | None = None
    total: int | None = None
    current: str = ""
    result: dict[str, Any] | None = None
    error: str = ""

    @property
    def percent(self) -> int | None:
        if self.done is None or not self.total:
            return None
        return round(100 * self.done / self.total)


def note_published(
    sender: str | None = None, headers: dict[str, Any] | None = None, **_: Any
) -> None:
    """Record a task of dbsync as PENDING before it is sent, so that its id is known after.

    Connected to before_task_publish: before, so that the worker's STARTED comes after it.
    """
    if not (sender and sender.startswith("sync.tasks.") and headers and headers.get("id")):
        return
    try:
        with REDIS_BREAKER:
            current_app.backend.store_result(headers["id"], None, "PENDING")
    except (RedisError, OSError) as error:
        logger.warning("result backend unavailable: task %s not recorded: %s", headers["id"], error)


def task_progress(task_id: str) -> TaskProgress | None:
    """Return what the result backend holds on a task; None if the backend does not answer.

    UnknownTask if it holds nothing: no task of that id was queued (or it was forgotten after
    CELERY_RESULT_EXPIRES).
    """
    try:
        meta = current_app.backend.get_task_meta(task_id)
    except (RedisError, OSError):
        logger.warning("result backend unavailable: no progress for task %s", task_id)
        return None
    if "task_id" not in meta:  # what the backend answers for an id it holds nothing on
        raise UnknownTask(f"no task {task_id} was queued, or it finished over a day ago")
    state, result = str(meta.get("status", "PENDING")), meta.get("result")
    if state == "PROGRESS" and isinstance(result, dict):
        return TaskProgress(
            task_id,
            state,
            done=int(result.get("done", 0)),
            total=int(result.get("total", 0)),
            current=str(result.get("current", "")),
        )
    if state == "SUCCESS" and isinstance(result, dict):
        return TaskProgress(task_id, state, result=result)
    if state == "FAILURE":
        return TaskProgress(task_id, state, error=failure_message(result))
    return TaskProgress(task_id, state)


def failure_message(error: object) -> str:
    """Return a message safe to show: dbsync's own errors carry no credentials, others might."""
    if isinstance(error, SyncError):
        return str(error)
    return f"{type(error).__name__}: see the worker's log"
