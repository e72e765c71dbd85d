"""Poll mode: each catalog checked on a schedule, by its watch's counter or its fingerprint."""

from datetime import timedelta

import pytest
from django.utils import timezone

from sync.changes import gate, leases, listening, polling, recency, store, turns, watch
from sync.encryption import encrypt
from sync.models import Database, ReflectionRun, Table
from sync.reflection import registry, runs
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_unchanged_catalog_queues_nothing(fresh, published):
    assert polling.poll_due() == {"unchanged": 1}
    assert published == []


@pytest.mark.parametrize("watched", [False, True], ids=["by-fingerprint", "by-version-counter"])
def test_a_change_made_behind_dbsyncs_back_is_found_and_reflected(
    worker, fresh, user_db, reader, watched
):
    if watched:
        watch.install(fresh)
        runs.reflect(fresh.id)  # stores the counter as it stands
        fresh.refresh_from_db()
        assert fresh.catalog_version is not None
    user_db.execute("CREATE TABLE behind_our_back (id int)")

    assert polling.poll_due() == {"changed": 1}

    wait_until(lambda: Table.objects.live().filter(name="behind_our_back").exists())
    wait_until(lambda: leases.holder(fresh.id) is None, what="the reflection to end")
    assert ReflectionRun.objects.filter(trigger="poll").count() == 1
    assert gate.status_of(fresh).status == "fresh"


def test_a_database_is_polled_once_per_interval(fresh, user_db, settings):
    settings.SYNC_POLL_INTERVAL = 60
    assert polling.poll_due() == {"unchanged": 1}
    user_db.execute("CREATE TABLE later (id int)")
    assert polling.poll_due() == {}  # not due again within the interval


def test_polling_off_checks_nothing(fresh, settings):
    settings.SYNC_POLL_INTERVAL = 0
    assert polling.poll_due() == {}
    assert listening.watch_mode(fresh) == "off"


def test_an_unreachable_database_turns_failed(fresh, reader):
    Database.objects.filter(pk=fresh.pk).update(
        encrypted_url=encrypt("postgresql://u:hunter2@127.0.0.1:1/x")
    )

    assert polling.poll_due() == {"unreachable": 1}

    fresh.refresh_from_db()
    assert gate.status_of(fresh).status == "failed"
    assert "hunter2" not in fresh.last_error


def test_the_renewal_spreads_due_databases_over_the_cycle_within_the_bound(
    user_db, routed, settings
):
    from django_celery_beat.models import PeriodicTask

    periodic_tasks = PeriodicTask.objects.count()
    databases = [registry.register(f"due{i}", user_db.url)[0] for i in range(12)]

    assert polling.renew_expired(bound=5, spread=60) == {"queued": 5, "deferred": 7}

    assert {r.queue for r in routed} == {"bulk"}
    countdowns = sorted(r.countdown or 0.0 for r in routed)
    # One in each 12-second slice of the cycle, at a random point within it; all far below
    # the broker's visibility timeout.
    for slot, countdown in enumerate(countdowns):
        assert 12 * slot - 1 <= countdown <= 12 * (slot + 1)
    assert turns.renewals_in_flight() == 5
    # While those are in flight, the next tick queues nothing more.
    assert polling.renew_expired(bound=5, spread=60) == {"deferred": 12}
    assert len(routed) == 5

    for r in routed:  # the five end
        database_id = r.kwargs["database_id"]
        store.client().delete(store.lease_key(database_id))
        recency.mark_recent(database_id, timezone.now())
        turns.reflection_ended(database_id)
    assert polling.renew_expired(bound=5, spread=60) == {"fresh": 5, "queued": 5, "deferred": 2}
    assert len({r.kwargs["database_id"] for r in routed}) == 10  # never the same one twice
    assert PeriodicTask.objects.count() == periodic_tasks  # no periodic task per database
    assert len(databases) == 12


def test_the_renewal_takes_the_most_overdue_first(user_db, routed):
    databases = [registry.register(f"age{i}", user_db.url)[0] for i in range(3)]
    now = timezone.now()
    for age, database in zip((1, 3, 2), databases, strict=True):
        Database.objects.filter(pk=database.pk).update(reflected_at=now - timedelta(hours=age))

    polling.renew_expired(bound=1, spread=0)

    assert [r.kwargs["database_id"] for r in routed] == [databases[1].id]
