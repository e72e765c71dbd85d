"""Fixtures: scratch PostgreSQL databases to reflect, registered with dbsync."""

import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from celery import current_app
from celery.signals import after_task_publish
from celery.worker import state as worker_state
from django.conf import settings
from django.core.cache import cache
from django.db.models.signals import post_save
from rest_framework.test import APIClient

from project import test_settings
from sync.breaker import REDIS_BREAKER
from sync.changes import queues, recency
from sync.changes.task_names import DELIVER
from sync.models import Database
from sync.reflection import registry, runs
from tests import helpers
from tests.helpers import (
    READERS,
    Routed,
    ScratchDatabase,
    client_for,
    create_scratch,
    drop_scratch,
    grant_to_readers,
    make_user,
    wait_until,
)


@pytest.fixture
def scratch_factory() -> Iterator[list[ScratchDatabase]]:
    """Create scratch databases on demand; all are dropped after the test."""
    created: list[ScratchDatabase] = []
    yield created
    for scratch in created:
        drop_scratch(scratch)


@pytest.fixture
def user_db(scratch_factory: list[ScratchDatabase]) -> ScratchDatabase:
    scratch = create_scratch()
    scratch_factory.append(scratch)
    return scratch


@pytest.fixture
def fresh(registered: Database, user_db: ScratchDatabase) -> Database:
    """A registered database with one table, reflected once, its recency key set."""
    user_db.execute("CREATE TABLE existing (id int)")
    runs.reflect(registered.id)
    registered.refresh_from_db()
    assert registered.reflected_at is not None
    recency.mark_recent(registered.id, registered.reflected_at)
    return registered


@pytest.fixture
def registered(db: None, user_db: ScratchDatabase) -> Database:
    database, _ = registry.register("userdb", user_db.url)
    return database


@pytest.fixture(scope="session", autouse=True)
def metrics_directory() -> Iterator[None]:
    """Remove the metrics directory of this test run (see project.test_settings) at its end,
    and the empty ones that processes started with an environment of their own created."""
    started = time.time()
    yield
    directory = Path(settings.PROMETHEUS_MULTIPROC_DIR)
    if directory.name.startswith("dbsync-metrics-"):
        shutil.rmtree(directory, ignore_errors=True)
    for other in directory.parent.glob("dbsync-metrics-*"):
        if other.stat().st_mtime >= started and not any(other.iterdir()):
            other.rmdir()


@pytest.fixture(autouse=True)
def clear_cache() -> None:
    """Start every test with no recency keys, leases, back-offs, dirty marks or cached names."""
    cache.clear()
    helpers.clear_all()
    REDIS_BREAKER.reset()  # and with Redis trusted again


@pytest.fixture(autouse=True)
def settle_tasks(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test on committed data, let the tasks it queued go before its data is flushed.

    The test worker lives for the whole session: a reflection it runs while the tables are
    truncated would deadlock with the truncation.
    """
    marker = request.node.get_closest_marker("django_db")
    if not (marker and marker.kwargs.get("transaction")):
        yield
        return
    request.getfixturevalue("transactional_db")  # set up first, so torn down after this
    yield
    current_app.control.purge()
    wait_until(lambda: not worker_state.active_requests, timeout=60, what="running tasks")


@pytest.fixture(scope="session")
def celery_config() -> dict[str, Any]:
    """Run the test worker against the real Redis broker (the test databases of it)."""
    return {
        "broker_url": settings.CELERY_BROKER_URL,
        "result_backend": settings.CELERY_RESULT_BACKEND,
        "broker_transport_options": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        "worker_prefetch_multiplier": 1,
        "task_routes": settings.CELERY_TASK_ROUTES,
        "task_default_queue": settings.CELERY_TASK_DEFAULT_QUEUE,
    }


@pytest.fixture(scope="session")
def celery_worker_parameters() -> dict[str, Any]:
    """The test worker consumes both queues, as a deployment's two kinds of worker do."""
    return {"queues": queues.QUEUES}


@pytest.fixture(scope="session")
def celery_includes() -> list[str]:
    return ["sync.tasks"]


@pytest.fixture(scope="session")
def celery_worker_pool() -> str:
    return "solo"


@pytest.fixture
def worker(celery_session_worker: Any) -> Any:
    """A real Celery worker consuming the real broker, in a thread of the test process."""
    celery_session_worker.app.control.purge()
    return celery_session_worker


@pytest.fixture(autouse=True)
def readers_read_everything() -> Iterator[None]:
    """Grant every database registered during a test to the readers group, records too."""
    post_save.connect(grant_to_readers, sender=Database, weak=False, dispatch_uid=READERS)
    yield
    post_save.disconnect(sender=Database, dispatch_uid=READERS)


@pytest.fixture
def reader(db: None) -> APIClient:
    return client_for(make_user("reader"))


@pytest.fixture
def staff(db: None) -> APIClient:
    return client_for(make_user("operator", staff=True))


@pytest.fixture
def routed() -> Iterator[list[Routed]]:
    """Collect where each task the gate publishes goes, to a broker database no worker reads."""
    found: list[Routed] = []
    aside = test_settings.ASIDE_BROKER_URL
    current_app.conf["broker_write_url"] = aside

    def record(
        sender: str | None = None,
        body: Any = None,
        routing_key: str = "",
        headers: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        if not (sender and sender.startswith("sync.tasks.") and headers):
            return
        eta = headers.get("eta")
        countdown = None
        if eta:
            countdown = (datetime.fromisoformat(eta) - datetime.now(UTC)).total_seconds()
        kwargs = body[1] if isinstance(body, tuple | list) else {}
        found.append(Routed(sender, headers["id"], routing_key, kwargs, countdown))

    after_task_publish.connect(record, weak=False)
    yield found
    after_task_publish.disconnect(record)
    current_app.conf["broker_write_url"] = None
    helpers.purge_broker(aside)


@pytest.fixture
def published() -> Iterator[list[str]]:
    """Collect the ids of the messages of dbsync's tasks that the broker accepted, but the
    change feed's passes a reflection that changed something queues after it."""
    ids: list[str] = []

    def count(sender: str | None = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
        if sender and sender.startswith("sync.tasks.") and sender != DELIVER and headers:
            ids.append(headers["id"])

    after_task_publish.connect(count, weak=False)
    yield ids
    after_task_publish.disconnect(count)
