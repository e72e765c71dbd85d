"""The Celery app of dbsync: `celery -A worker worker`."""

from worker.app import app

__all__ = ["app"]
