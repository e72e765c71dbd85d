"""Connections held on users' servers: given back after reflections, bounded for reads."""

import threading
import time

import pytest

from sync.exceptions import CatalogUnavailable
from sync.reflection import registry, runs
from sync.remote import catalog, connections
from sync.remote.connections import Source
from tests.helpers import dbsync_connections, run_together

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_process_that_reflected_many_databases_keeps_a_bounded_number_of_connections(
    user_db, settings
):
    settings.SYNC_POOLED_DATABASES = 3
    user_db.execute("CREATE TABLE t (id int)")
    databases = [registry.register(f"many{i}", user_db.url)[0] for i in range(12)]

    for database in databases:
        runs.reflect(database.id)

    assert 1 <= dbsync_connections(user_db) <= 3


def test_without_pools_a_reflection_holds_no_connection(user_db, settings):
    settings.SYNC_POOLED_DATABASES = 0
    database, _ = registry.register("alone", user_db.url)

    runs.reflect(database.id)

    assert dbsync_connections(user_db) == 0


def test_polling_many_databases_holds_no_connection(user_db):
    for key in range(40_000, 40_010):  # ten databases, as far as the engines can tell
        catalog.read_fingerprint(Source(key, user_db.url))
        assert catalog.read_version(Source(key, user_db.url)) is None

    assert dbsync_connections(user_db) == 0


def test_reads_on_the_fly_keep_pooled_connections_to_a_bounded_number_of_databases(
    user_db, settings
):
    settings.SYNC_POOLED_DATABASES = 3
    for key in range(10_000, 10_010):  # ten databases, as far as the pools can tell
        assert connections.read_once(Source(key, user_db.url), "SELECT 1", {}) == [(1,)]

    assert 1 <= dbsync_connections(user_db) <= 3


def test_connections_to_one_server_in_use_at_once_are_bounded(user_db, settings):
    settings.SYNC_POOLED_DATABASES = 0  # each read opens and closes its own: all are counted
    settings.SYNC_CONNECTIONS_PER_SERVER = 2
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], dbsync_connections(user_db))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        keys = iter(range(20_000, 20_006))
        rows = run_together(
            6,
            lambda: connections.read_once(
                Source(next(keys), user_db.url), "SELECT pg_sleep(0.3)", {}
            ),
        )
    finally:
        done.set()
        sampler.join()

    assert len(rows) == 6  # every read got its turn
    assert 1 <= peak[0] <= 2


def test_a_read_that_finds_no_free_connection_slot_says_so(user_db, settings):
    settings.SYNC_CONNECTIONS_PER_SERVER = 1
    settings.SYNC_CONNECT_TIMEOUT = 1
    with connections.server_slot(user_db.url), pytest.raises(CatalogUnavailable, match="in use"):
        connections.read_once(Source(30_000, user_db.url), "SELECT 1", {})
