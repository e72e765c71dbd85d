"""Reading a database's catalog: one snapshot, the fingerprint, the watch's version, who answers."""

from typing import Any

import pytest
from sqlalchemy import event

from sync.exceptions import CatalogUnavailable
from sync.remote import catalog, connections
from sync.remote.connections import Source
from tests.helpers import dbsync_connections

pytestmark = pytest.mark.django_db(transaction=True)

SOURCE_KEY = 50_000  # the engines' key; no registered database is involved


def test_the_catalog_is_read_in_one_read_only_time_bounded_snapshot(user_db, settings):
    settings.SYNC_STATEMENT_TIMEOUT = 3
    source = Source(SOURCE_KEY, user_db.url)
    seen: list[tuple[Any, ...]] = []

    def transaction_settings(connection, *_):  # after each statement of the read
        with connection.connection.dbapi_connection.cursor() as beside:
            beside.execute(
                "SELECT current_setting('transaction_isolation'),"
                " current_setting('transaction_read_only'), current_setting('statement_timeout'),"
                " now()"  # the transaction's start
            )
            seen.append(beside.fetchone())

    engine = connections.snapshot_engine(source)
    event.listen(engine, "after_cursor_execute", transaction_settings)
    try:
        catalog.read_catalog(source)
    finally:
        event.remove(engine, "after_cursor_execute", transaction_settings)

    # The timeout with the catalog's fingerprint, the catalog itself: all in the one snapshot.
    assert [row[:3] for row in seen] == [("repeatable read", "on", "3s")] * 2
    assert len({row[3] for row in seen}) == 1
    assert dbsync_connections(user_db) <= 1  # kept for the next reflection, none besides


def test_a_known_fingerprint_spares_the_catalog_read_and_a_change_shows_in_it(user_db):
    source = Source(SOURCE_KEY, user_db.url)
    first = catalog.read_catalog(source)
    assert first.snapshot is not None

    again = catalog.read_catalog(source, known=first.fingerprint.text)
    assert again.snapshot is None
    assert again.fingerprint == catalog.read_fingerprint(source) == first.fingerprint

    user_db.execute("CREATE TABLE arrived (id int)")
    changed = catalog.read_catalog(source, known=first.fingerprint.text)

    assert changed.snapshot is not None
    assert "arrived" in {relation.name for relation in changed.snapshot.relations}
    assert catalog.read_fingerprint(source) == changed.fingerprint != first.fingerprint


def test_the_version_is_none_where_no_watch_is_installed(user_db):
    source = Source(SOURCE_KEY, user_db.url)
    assert catalog.read_version(source) is None
    assert catalog.read_catalog(source).version is None


def test_probe_says_which_database_answers(user_db):
    answer = catalog.probe(user_db.url)

    assert answer.database_name == user_db.name
    assert answer.superuser  # the test server's role
    assert answer.same_database(catalog.probe(user_db.url))


def test_probe_of_a_server_that_does_not_answer_keeps_the_password_out():
    with pytest.raises(CatalogUnavailable) as raised:
        catalog.probe("postgresql://reader:hunter2@127.0.0.1:1/shop")
    assert "hunter2" not in str(raised.value)
