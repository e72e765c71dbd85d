"""Poll mode: each catalog checked on a schedule, by its watch's counter or its fingerprint."""

import pytest

from sync import polling, reflection, state, watch
from sync.models import Database, ReflectionRun, Table
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def imported(registered: Database, user_db) -> Database:
    user_db.execute("CREATE TABLE existing (id int)")
    reflection.reflect(registered.id)
    registered.refresh_from_db()
    state.mark_recent(registered.id, registered.reflected_at)
    return registered


def test_an_unchanged_catalog_queues_nothing(imported, published):
    assert polling.poll_due() == {"unchanged": 1}
    assert published == []


@pytest.mark.parametrize("watched", [False, True], ids=["by-fingerprint", "by-version-counter"])
def test_a_change_made_behind_dbsyncs_back_is_found_and_reflected(
    worker, imported, user_db, reader, watched
):
    if watched:
        watch.install(imported)
        reflection.reflect(imported.id)  # stores the counter as it stands
        imported.refresh_from_db()
        assert imported.catalog_version is not None
    user_db.execute("CREATE TABLE behind_our_back (id int)")

    assert polling.poll_due() == {"changed": 1}

    wait_until(lambda: Table.objects.live().filter(name="behind_our_back").exists())
    wait_until(lambda: state.holder(imported.id) is None, what="the reflection to end")
    assert ReflectionRun.objects.filter(trigger="poll").count() == 1
    assert state.status_of(imported).status == "fresh"


def test_a_database_is_polled_once_per_interval(imported, user_db, settings):
    settings.SYNC_POLL_INTERVAL = 60
    assert polling.poll_due() == {"unchanged": 1}
    user_db.execute("CREATE TABLE later (id int)")
    assert polling.poll_due() == {}  # not due again within the interval


def test_polling_off_checks_nothing(imported, settings):
    settings.SYNC_POLL_INTERVAL = 0
    assert polling.poll_due() == {}
    assert state.watch_mode(imported) == "off"


def test_an_unreachable_database_turns_failed(imported, reader):
    Database.objects.filter(pk=imported.pk).update(url="postgresql://u:hunter2@127.0.0.1:1/x")

    assert polling.poll_due() == {"unreachable": 1}

    imported.refresh_from_db()
    assert state.status_of(imported).status == "failed"
    assert "hunter2" not in imported.last_error
