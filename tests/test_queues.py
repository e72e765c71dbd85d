"""The two queues: each task lands on its own; a person's reflection never waits behind bulk."""

from collections.abc import Callable, Iterator

import pytest
from celery import current_app
from django.utils import timezone

from sync import tasks
from sync.changes import deliveries, gate, leases, polling, queues, recency, turns
from sync.models import Database, ReflectionRun
from sync.reflection import registry
from tests.helpers import (
    HeldDatabaseRow,
    Routed,
    ScratchDatabase,
    run_together,
    start_worker_process,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

REFLECT = tasks.reflect_db_objects.name

PUBLISHERS: dict[str, tuple[Callable[[Database], object], str, str]] = {
    "list": (lambda d: gate.ensure_fresh(d), REFLECT, "interactive"),
    "page": (lambda d: gate.ensure_fresh(d, "page"), REFLECT, "interactive"),
    "live-read": (
        lambda d: gate.notice_change(d, "live"), REFLECT, "interactive"
    ),
    "api": (lambda d: gate.request_reflection(d, "api"), REFLECT, "interactive"),
    "admin": (
        lambda d: gate.request_reflection(d, "admin"), REFLECT, "interactive"
    ),
    "listener": (
        lambda d: gate.notice_change(d, "listener"), REFLECT, "interactive"
    ),
    "poll-found-a-change": (
        lambda d: gate.notice_change(d, "poll"), REFLECT, "interactive"
    ),
    "renewal": (lambda d: polling.renew_expired(), REFLECT, "bulk"),
    "import": (lambda d: gate.request_import(d), tasks.import_registered_database.name, "bulk"),
}  # fmt: skip


@pytest.mark.parametrize(("publish", "task", "queue"), PUBLISHERS.values(), ids=PUBLISHERS.keys())
def test_each_reflection_lands_on_its_queue(registered, routed: list[Routed], publish, task, queue):
    publish(registered)

    assert [(r.task, r.queue) for r in routed] == [(task, queue)]


@pytest.mark.parametrize(
    "task",
    [tasks.renew_databases, tasks.poll_databases, tasks.purge_dropped, tasks.import_new_databases],
    ids=["renew-tick", "poll-tick", "purge", "import-tick"],
)
def test_each_beat_job_lands_on_the_bulk_queue(task):
    route = current_app.amqp.router.route({}, task.name, (), {})
    assert route["queue"].name == "bulk"


def test_webhook_deliveries_land_on_a_queue_of_their_own(registered, routed: list[Routed]):
    deliveries.queue_delivery(registered.id)
    assert [(r.task, r.queue, r.kwargs) for r in routed] == [
        (tasks.deliver_webhooks.name, "webhooks", {"database_id": registered.id})
    ]


def test_a_retry_goes_back_to_the_queue_it_came_from():
    assert queues.queue_of(REFLECT, {"trigger": "renewal"}) == "bulk"
    assert queues.queue_of(REFLECT, {"trigger": "list"}) == "interactive"


@pytest.fixture
def two_workers() -> Iterator[None]:
    """Two worker processes under different node names, consuming the same two queues."""
    started = [start_worker_process("interactive,bulk", name=f"twin{i}") for i in (1, 2)]
    yield
    for process in started:
        stop_process(process)


def test_two_workers_reflect_once_per_request(two_workers, registered, user_db, reader, published):
    user_db.execute("CREATE TABLE seen_once (id int)")
    recency.expire(registered.id)

    statuses = run_together(
        20, lambda: reader.get(f"/api/v1/tables/?database={registered.id}")["X-Reflection-Status"]
    )

    assert set(statuses) <= {"queued", "running"}
    assert len(published) == 1
    wait_until(lambda: recency.is_recent(registered.id), timeout=60, what="the reflection")
    assert ReflectionRun.objects.filter(database=registered).count() == 1


def test_two_workers_renew_each_database_once(
    two_workers, user_db: ScratchDatabase, published, settings
):
    databases = [registry.register(f"db{i}", user_db.url)[0] for i in range(8)]

    assert polling.renew_expired(spread=2) == {"queued": 8}

    wait_until(lambda: all(recency.is_recent(d.id) for d in databases), timeout=90, what="renewal")
    runs = ReflectionRun.objects.filter(trigger="renewal")
    assert sorted(runs.values_list("database_id", flat=True)) == sorted(d.id for d in databases)
    wait_until(lambda: turns.renewals_in_flight() == 0, what="every renewal's slot to be free")


def running(database: Database) -> bool:
    held = leases.holder(database.id)
    return held is not None and held[0] == leases.LeaseState.RUNNING


def test_a_persons_reflection_does_not_wait_behind_a_renewal_backlog(user_db: ScratchDatabase):
    backlog = [registry.register(f"bulk{i}", user_db.url)[0] for i in range(6)]
    person, _ = registry.register("person", user_db.url)
    recency.mark_recent(person.id, timezone.now())  # only the backlog is due for renewal
    held = [HeldDatabaseRow(database) for database in backlog]  # every renewal blocks
    bulk = start_worker_process("bulk", name="bulk")
    interactive = start_worker_process("interactive", name="interactive")
    try:
        assert polling.renew_expired(spread=0) == {"fresh": 1, "queued": 6}
        wait_until(
            lambda: any(running(d) for d in backlog),
            timeout=60,
            what="the bulk worker to be stuck in the backlog",
        )
        recency.expire(person.id)
        assert gate.ensure_fresh(person).queued_now

        wait_until(lambda: recency.is_recent(person.id), timeout=60, what="the person's reflection")
        assert ReflectionRun.objects.filter(database=person, trigger="list").exists()
        assert ReflectionRun.objects.filter(trigger="renewal").count() == 0  # all still waiting
    finally:
        for row in held:
            row.release()
        wait_until(
            lambda: ReflectionRun.objects.filter(trigger="renewal").count() == len(backlog),
            timeout=90,
            what="the backlog to move once released",
        )
        stop_process(bulk)
        stop_process(interactive)


@pytest.mark.parametrize(
    ("ask", "trigger"),
    [
        (lambda d: gate.ensure_fresh(d), "list"),
        (lambda d: gate.notice_change(d, "listener"), "listener"),
    ],
    ids=["list", "listener"],
)
def test_a_person_or_a_change_takes_over_a_renewal_still_waiting_on_the_bulk_queue(
    registered, routed: list[Routed], ask, trigger
):
    assert polling.renew_expired(spread=60) == {"queued": 1}

    taken = ask(registered)

    assert taken.queued_now
    assert [(r.queue, r.kwargs["trigger"]) for r in routed] == [
        ("bulk", "renewal"),
        ("interactive", trigger),
    ]
    assert leases.holder(registered.id) == (leases.LeaseState.QUEUED, taken.task_id)


def test_a_renewal_run_after_a_take_over_does_nothing(registered, routed: list[Routed]):
    polling.renew_expired(spread=60)
    renewal = routed[0]
    gate.notice_change(registered, "listener")

    outcome = tasks.reflect_db_objects.apply(kwargs=renewal.kwargs, task_id=renewal.task_id)

    assert outcome.get() == "duplicate"
    assert not ReflectionRun.objects.exists()
    assert turns.renewals_in_flight() == 0  # its slot is free again
