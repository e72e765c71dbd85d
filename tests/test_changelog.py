"""The watch's change log in a real database: what it records, and what reflections apply of it."""

import psycopg2
import pytest

from sync.changes import watch
from sync.models import Database
from sync.reflection import runs
from sync.remote.changelog import WATCH_SCHEMA
from tests.helpers import ScratchDatabase, admin_connection, one_row

pytestmark = pytest.mark.django_db


@pytest.fixture
def watched(registered: Database) -> Database:
    watch.install(registered)
    runs.reflect(registered.id)  # the first run after an install is a full one: the position
    registered.refresh_from_db()
    return registered


def log_rows(user_db: ScratchDatabase) -> list[tuple[object, ...]]:
    with admin_connection(user_db.name) as connection, connection.cursor() as cursor:
        cursor.execute(
            f"SELECT object_type, schema_name, command_tag FROM {WATCH_SCHEMA}.change_log"
            " ORDER BY id"
        )
        rows = cursor.fetchall()
    connection.close()
    return rows


def test_each_object_touched_is_logged_with_who_and_where(watched, user_db):
    user_db.execute("CREATE SCHEMA s; CREATE TABLE s.t (id int); CREATE VIEW s.v AS SELECT 1")
    user_db.execute("ALTER TABLE s.t ADD COLUMN b int; DROP VIEW s.v")

    result = runs.reflect(watched.id)

    kinds = [(e.object_type, e.schema_name, e.command_tag) for e in result.entries]
    assert kinds == [
        ("schema", None, "CREATE SCHEMA"),
        ("table", "s", "CREATE TABLE"),
        ("view", "s", "CREATE VIEW"),
        ("table", "s", "ALTER TABLE"),
        ("view", "s", "DROP VIEW"),
    ]
    first = result.entries[0]
    assert first.role == "postgres"
    assert first.objid > 0
    assert first.backend_pid > 0
    assert first.xid > 0
    assert first.statement_time.tzinfo is not None
    assert [e.id for e in result.entries] == sorted(e.id for e in result.entries)


def test_an_entry_is_applied_once(watched, user_db):
    user_db.execute("CREATE TABLE once (id int)")

    assert len(runs.reflect(watched.id).entries) == 1
    assert runs.reflect(watched.id).entries == ()


def test_a_rolled_back_ddl_logs_nothing(watched, user_db):
    before = log_rows(user_db)
    connection = admin_connection(user_db.name)
    connection.autocommit = False
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE gone (id int); ALTER TABLE gone RENAME TO gone2")
    connection.rollback()
    connection.close()

    assert log_rows(user_db) == before
    assert runs.reflect(watched.id).entries == ()


def test_a_transaction_open_during_a_read_is_applied_after_its_commit(watched, user_db):
    slow = admin_connection(user_db.name)
    slow.autocommit = False
    with slow.cursor() as cursor:
        cursor.execute("CREATE TABLE slow (id int)")  # its entry's id is the lower one
    user_db.execute("CREATE TABLE quick (id int)")

    seen = runs.reflect(watched.id)
    slow.commit()
    slow.close()
    later = runs.reflect(watched.id)

    assert [e.command_tag for e in seen.entries] == ["CREATE TABLE"]
    assert len(later.entries) == 1
    assert later.entries[0].id < seen.entries[0].id
    assert watched.tables.live().filter(name__in=["slow", "quick"]).count() == 2


def test_a_watched_ddl_leaves_the_sessions_lastval_alone(watched, user_db):
    with admin_connection(user_db.name) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE SEQUENCE mine START 41; SELECT nextval('mine')")
        cursor.execute("CREATE TABLE t2 (a int); DROP TABLE t2; SELECT lastval()")
        (value,) = one_row(cursor)
    connection.close()

    assert value == 41


def test_a_role_that_owns_nothing_of_the_watch_can_run_ddl(watched, user_db):
    user_db.execute(
        "CREATE ROLE dbsync_plain_role LOGIN; GRANT CREATE ON SCHEMA public TO dbsync_plain_role"
    )
    try:
        connection = psycopg2.connect(
            host="127.0.0.1", user="dbsync_plain_role", dbname=user_db.name
        )
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE plain (id int); ALTER TABLE plain RENAME TO plain2")
        connection.close()

        entries = runs.reflect(watched.id).entries

        assert {e.role for e in entries} == {"dbsync_plain_role"}
        assert watched.tables.live().filter(name="plain2").exists()
    finally:
        user_db.execute("DROP TABLE IF EXISTS plain2")
        user_db.execute("REVOKE ALL ON SCHEMA public FROM dbsync_plain_role")
        user_db.execute("DROP ROLE dbsync_plain_role")


# The watch as the release before the change log installed it: a counter bumped by nextval.
EARLIER_WATCH = """
CREATE SCHEMA dbsync;
COMMENT ON SCHEMA dbsync IS 'dbsync: DDL watch, installed by manage.py watch';
CREATE SEQUENCE dbsync.ddl_version;
CREATE FUNCTION dbsync.ddl_command_end() RETURNS event_trigger LANGUAGE plpgsql AS $w$
BEGIN
    PERFORM nextval('dbsync.ddl_version');
    PERFORM pg_notify('dbsync_ddl', 'ddl');
END $w$;
CREATE FUNCTION dbsync.sql_drop() RETURNS event_trigger LANGUAGE plpgsql AS $w$
BEGIN
    PERFORM nextval('dbsync.ddl_version');
    PERFORM pg_notify('dbsync_ddl', 'ddl');
END $w$;
CREATE EVENT TRIGGER dbsync_ddl_command_end ON ddl_command_end
    EXECUTE FUNCTION dbsync.ddl_command_end();
CREATE EVENT TRIGGER dbsync_sql_drop ON sql_drop EXECUTE FUNCTION dbsync.sql_drop();
"""


def test_watch_upgrades_an_earlier_watch_in_place(registered, user_db):
    user_db.execute(EARLIER_WATCH)
    user_db.execute("CREATE TABLE before_upgrade (id int)")

    watch.install(registered)
    runs.reflect(registered.id)
    user_db.execute("CREATE TABLE after_upgrade (id int)")
    result = runs.reflect(registered.id, trigger="listener")

    assert result.targeted
    assert [e.command_tag for e in result.entries] == ["CREATE TABLE"]
    assert registered.tables.live().filter(name__endswith="_upgrade").count() == 2


def test_the_log_keeps_at_most_its_cap_with_dbsync_stopped(registered, user_db, settings):
    settings.SYNC_CHANGE_LOG_CAP = 1000
    watch.install(registered)
    runs.reflect(registered.id)  # a position, then nothing reads the log any more
    with admin_connection(user_db.name) as connection, connection.cursor() as cursor:
        for i in range(1500):
            cursor.execute(f"CREATE TABLE capped{i} (); DROP TABLE capped{i}")
        cursor.execute(f"SELECT count(*) FROM {WATCH_SCHEMA}.change_log")
        (rows,) = one_row(cursor)
    connection.close()

    assert 1000 <= rows <= 2000  # the cap, and at most the thousand ids before the next trim
    result = runs.reflect(registered.id, trigger="listener")
    assert not result.targeted  # entries were trimmed unread: the whole catalog is read
    assert result.entries == ()
