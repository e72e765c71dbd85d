"""Install and remove a registered database's DDL watch: event triggers that log and announce DDL.

The watch is a schema `dbsync` holding a version counter (a sequence), a bounded change log and
the functions run by event triggers on ddl_command_end and sql_drop. When a schema, relation or
extension changed (temporary objects and the objects an extension script creates skipped), they
log each object touched with who and where, in the user's transaction, advance the counter, and
send NOTIFY on one channel unless the server allows prepared transactions. The payload is a
constant, so it can never make a user's DDL fail for its size; the statement's text is never kept.
"""

from collections.abc import Callable

import psycopg2
from django.conf import settings
from django.utils import timezone
from psycopg2 import errors as pg_errors
from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from sync.exceptions import WatchRefused
from sync.models import Database, WatchSignal
from sync.remote import connections
from sync.remote.catalog import WATCH_SCHEMA, WATCH_SCHEMA_COMMENT

CHANNEL = "dbsync_ddl"
PAYLOAD = "ddl"
TRIGGERS = ("dbsync_ddl_command_end", "dbsync_sql_drop")
WATCHED_TYPES = "('schema', 'table', 'view', 'materialized view', 'foreign table', 'extension')"


# The two keys of the advisory lock that makes reading and advancing the counter one step: the
# two-key form, whose key space no one-bigint lock of the user's can reach ('dbsy', 'log ').
LOCK_KEYS = (1684169337, 1819240224)

# Record what a DDL touched, in the user's transaction. SECURITY DEFINER, so that any role's DDL
# may log; search_path pinned, so that no object of the caller's can stand in for one of these.
# Ids come from the counter advanced by setval under a lock held for two statements: nextval
# would set the session's lastval(), and a row lock would make every DDL wait for the others'
# commits. Every thousandth id, the rows dbsync applied go (those of transactions older than the
# oldest open at its last read, the xmin it stores in log_applied), then the rows past the cap; a
# cap trim is recorded (log_trimmed), so that the reader knows its log has a gap. Never the
# statement's text. An error inside never fails the DDL (and lets go of the lock if it was
# taken). One function per event, all inline: each call of a SECURITY DEFINER function with its
# own search_path costs a fifth of a small DDL's time.
_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.{name}() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $watch$
DECLARE
    n bigint;
    last bigint;
    applied bigint;
    trimmed bigint;
BEGIN
    SELECT count(*) INTO n {changed};
    IF n = 0 THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_lock({lock});
    last := coalesce(pg_sequence_last_value('{schema}.ddl_version'), 0);
    PERFORM setval('{schema}.ddl_version', last + n);
    PERFORM pg_advisory_unlock({lock});
    INSERT INTO {schema}.change_log
    SELECT last + row_number() OVER (), {columns}, session_user,
           current_setting('application_name'), host(inet_client_addr()), pg_backend_pid(),
           txid_current(), statement_timestamp()
    {changed};
    IF (last + n) / 1000 > last / 1000 THEN
        applied := coalesce(pg_sequence_last_value('{schema}.log_applied'), 0);
        DELETE FROM {schema}.change_log WHERE xid < applied;
        DELETE FROM {schema}.change_log WHERE id <= last + n - {cap};
        GET DIAGNOSTICS trimmed = ROW_COUNT;
        IF trimmed > 0 THEN
            PERFORM setval('{schema}.log_trimmed', last + n - {cap});
        END IF;
    END IF;
    {notify}
EXCEPTION WHEN OTHERS THEN
    IF EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
               AND (classid, objid, objsubid) = ({lock}, 2) AND granted) THEN
        PERFORM pg_advisory_unlock({lock});
    END IF;
    RAISE WARNING 'dbsync watch: %', SQLERRM;
END
$watch$;
"""

CHANGED_BY_COMMAND = f"""
    FROM pg_event_trigger_ddl_commands() AS c
    WHERE NOT c.in_extension AND c.schema_name IS DISTINCT FROM 'pg_temp'
      AND c.object_type IN {WATCHED_TYPES}
"""
CHANGED_BY_DROP = f"""
    FROM pg_event_trigger_dropped_objects() AS d
    WHERE NOT d.is_temporary AND d.object_type IN {WATCHED_TYPES}
"""
COMMAND_COLUMNS = "c.objid, c.object_type, c.schema_name, c.command_tag"
DROP_COLUMNS = "d.objid, d.object_type, d.schema_name, TG_TAG"


def _function(name: str, columns: str, changed: str, signal: str, cap: int) -> str:
    notify = f"PERFORM pg_notify('{CHANNEL}', '{PAYLOAD}');" if signal == WatchSignal.NOTIFY else ""
    lock = ", ".join(map(str, LOCK_KEYS))
    return _FUNCTION.format(
        schema=WATCH_SCHEMA,
        name=name,
        columns=columns,
        changed=changed,
        lock=lock,
        cap=int(cap),
        notify=notify,
    )


# The log is readable by the registered role only: it names roles, applications and addresses.
_SCHEMA = f"""
CREATE SCHEMA IF NOT EXISTS {WATCH_SCHEMA};
COMMENT ON SCHEMA {WATCH_SCHEMA} IS '{WATCH_SCHEMA_COMMENT}';
GRANT USAGE ON SCHEMA {WATCH_SCHEMA} TO PUBLIC;
CREATE SEQUENCE IF NOT EXISTS {WATCH_SCHEMA}.ddl_version;
GRANT SELECT ON SEQUENCE {WATCH_SCHEMA}.ddl_version TO PUBLIC;
CREATE SEQUENCE IF NOT EXISTS {WATCH_SCHEMA}.log_applied;
CREATE SEQUENCE IF NOT EXISTS {WATCH_SCHEMA}.log_trimmed;
GRANT SELECT ON SEQUENCE {WATCH_SCHEMA}.log_trimmed TO PUBLIC;
CREATE TABLE IF NOT EXISTS {WATCH_SCHEMA}.change_log (
    id bigint PRIMARY KEY,
    objid oid NOT NULL,
    object_type text NOT NULL,
    schema_name text,
    command_tag text NOT NULL,
    role text NOT NULL,
    application text NOT NULL,
    client_addr text,
    backend_pid integer NOT NULL,
    xid bigint NOT NULL,
    statement_time timestamptz NOT NULL
);
REVOKE ALL ON {WATCH_SCHEMA}.change_log FROM PUBLIC;
"""

_TRIGGERS = f"""
DROP EVENT TRIGGER IF EXISTS {TRIGGERS[0]};
CREATE EVENT TRIGGER {TRIGGERS[0]} ON ddl_command_end
    EXECUTE FUNCTION {WATCH_SCHEMA}.ddl_command_end();
DROP EVENT TRIGGER IF EXISTS {TRIGGERS[1]};
CREATE EVENT TRIGGER {TRIGGERS[1]} ON sql_drop EXECUTE FUNCTION {WATCH_SCHEMA}.sql_drop();
"""

# What the registered role may do beyond reading the counter: read the log, and say how far it
# applied it (the trim's bound), where it is not the role that installs the watch.
_GRANTS = """
DO $grants$ BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = {role}) AND {role} <> current_user THEN
        EXECUTE format('GRANT SELECT ON {schema}.change_log TO %I', {role});
        EXECUTE format('GRANT SELECT, UPDATE ON SEQUENCE {schema}.log_applied TO %I', {role});
    END IF;
END $grants$;
"""


def install_script(signal: str, cap: int, role: str) -> str:
    """Return the script that installs the watch, or upgrades an earlier one in place."""
    literal = "'" + role.replace("'", "''") + "'"
    return "".join(
        (
            _SCHEMA,
            _function("ddl_command_end", COMMAND_COLUMNS, CHANGED_BY_COMMAND, signal, cap),
            _function("sql_drop", DROP_COLUMNS, CHANGED_BY_DROP, signal, cap),
            _TRIGGERS,
            _GRANTS.format(schema=WATCH_SCHEMA, role=literal),
        )
    )


# Only what the install created. The schema goes last, on its own and without CASCADE, so that
# anything else someone put into it stays, and the uninstall says so.
UNINSTALL = f"""
DROP EVENT TRIGGER IF EXISTS {TRIGGERS[0]};
DROP EVENT TRIGGER IF EXISTS {TRIGGERS[1]};
DROP FUNCTION IF EXISTS {WATCH_SCHEMA}.ddl_command_end();
DROP FUNCTION IF EXISTS {WATCH_SCHEMA}.sql_drop();
DROP TABLE IF EXISTS {WATCH_SCHEMA}.change_log;
DROP SEQUENCE IF EXISTS {WATCH_SCHEMA}.ddl_version;
DROP SEQUENCE IF EXISTS {WATCH_SCHEMA}.log_applied;
DROP SEQUENCE IF EXISTS {WATCH_SCHEMA}.log_trimmed;
"""
UNINSTALL_SCHEMA = f"DROP SCHEMA IF EXISTS {WATCH_SCHEMA}"

# Both triggers present and enabled: what the listener checks on every heartbeat.
INSTALLED = f"""
    SELECT count(*) = 2 FROM pg_event_trigger
    WHERE evtname IN ('{TRIGGERS[0]}', '{TRIGGERS[1]}') AND evtenabled <> 'D'
"""

# The signal a server allows: NOTIFY, unless it allows prepared transactions.
SIGNAL_OF_SERVER = (
    f"SELECT CASE WHEN current_setting('max_prepared_transactions')::int > 0"
    f" THEN '{WatchSignal.COUNTER.value}' ELSE '{WatchSignal.NOTIFY.value}' END"
)


def install(database: Database, url: str | None = None, signal: str | None = None) -> str:
    """Install (or re-install, or upgrade) the watch, connecting with url if given, else the
    registered one; return the signal it uses (WatchSignal), the server's choice unless given.

    Raise WatchRefused, naming the privilege needed, when the role may not create event
    triggers; the database then stays in poll mode. The log's position is forgotten: the next
    reflection is a full one.
    """
    role = make_url(database.url).username or ""
    chosen = signal

    def script(connection: Connection) -> str:
        nonlocal chosen
        if chosen is None:
            chosen = str(connection.exec_driver_sql(SIGNAL_OF_SERVER).scalar_one())
        return install_script(chosen, settings.SYNC_CHANGE_LOG_CAP, role)

    _run(database, url, script)
    chosen = chosen or WatchSignal.NOTIFY
    Database.objects.filter(pk=database.pk).update(
        watch_installed_at=timezone.now(),
        watch_error="",
        watch_signal=chosen,
        log_position=None,
        log_snapshot="",
    )
    return chosen


def uninstall(database: Database, url: str | None = None) -> None:
    """Remove every object the watch created; the database goes back to poll mode."""
    _run(database, url, UNINSTALL)
    Database.objects.filter(pk=database.pk).update(
        watch_installed_at=None,
        watch_error="",
        catalog_version=None,
        watch_signal="",
        log_position=None,
        log_snapshot="",
    )
    _run(database, url, UNINSTALL_SCHEMA)


def lost(database: Database, reason: str) -> None:
    """Record that the watch's triggers are gone (dropped by hand): back to poll mode."""
    Database.objects.filter(pk=database.pk).update(watch_installed_at=None, watch_error=reason)


def _run(database: Database, url: str | None, script: str | Callable[[Connection], str]) -> None:
    url = url or database.url
    engine = connections.create_user_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            _execute(connection, script if isinstance(script, str) else script(connection))
    except DBAPIError as error:
        refused = _refusal(database, error, url)
        if refused is None:
            raise connections.unavailable(url, error) from None
        Database.objects.filter(pk=database.pk).update(watch_error=str(refused))
        raise refused from None
    finally:
        engine.dispose()


def _execute(connection: Connection, script: str) -> None:
    """Run the script on the driver's own cursor, given no parameters, so that its % signs stay
    as they are; errors are wrapped as SQLAlchemy wraps them."""
    cursor = connection.connection.cursor()
    try:
        cursor.execute(script)
    except psycopg2.Error as error:
        raise DBAPIError.instance(script, None, error, psycopg2.Error) from error
    finally:
        cursor.close()


def _refusal(database: Database, error: DBAPIError, url: str) -> WatchRefused | None:
    """Return the one-line refusal for a privilege or dependency error, None for others."""
    detail = connections.error_detail(error, url)
    if isinstance(error.orig, pg_errors.InsufficientPrivilege):
        return WatchRefused(
            f"cannot change the watch of {database.name}: {detail}. Event triggers need a "
            "superuser (on Amazon RDS a member of rds_superuser): run it with "
            f"`manage.py watch {database.name} --url postgresql://SUPERUSER@HOST/DB`, or "
            "`ALTER ROLE ... SUPERUSER` for the registered role. Until then the catalog is "
            f"polled every {settings.SYNC_POLL_INTERVAL} s."
        )
    if isinstance(error.orig, pg_errors.DependentObjectsStillExist):
        return WatchRefused(
            f"the watch of {database.name} was removed, but schema {WATCH_SCHEMA} holds objects "
            f"that are not the watch's, so the schema was kept: {detail}"
        )
    return None
