"""Install and remove a registered database's DDL watch: event triggers that count and announce DDL.

The watch is a schema `dbsync` holding a version counter (a sequence) and two functions, run by
event triggers on ddl_command_end and sql_drop. Each bumps the counter and sends NOTIFY on one
channel when a schema, relation or extension changed, skipping temporary objects and the
objects an extension script creates (the extension itself counts once). The payload is a
constant: a payload never carries names, so it can never make a user's DDL fail for its size.
"""

import psycopg2
from django.conf import settings
from django.utils import timezone
from psycopg2 import errors as pg_errors
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from sync.exceptions import WatchRefused
from sync.models import Database
from sync.remote import connections
from sync.remote.catalog import WATCH_SCHEMA, WATCH_SCHEMA_COMMENT

CHANNEL = "dbsync_ddl"
PAYLOAD = "ddl"
TRIGGERS = ("dbsync_ddl_command_end", "dbsync_sql_drop")
WATCHED_TYPES = "('schema', 'table', 'view', 'materialized view', 'foreign table', 'extension')"

# SECURITY DEFINER, so that any role's DDL may bump the counter; search_path pinned, so that no
# object of the caller's can stand in for one of these. An error inside never fails the DDL.
_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.{name}() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $watch$
BEGIN
    IF EXISTS ({changed}) THEN
        PERFORM nextval('{schema}.ddl_version');
        PERFORM pg_notify('{channel}', '{payload}');
    END IF;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'dbsync watch: %', SQLERRM;
END
$watch$;
"""

CHANGED_BY_COMMAND = f"""
    SELECT FROM pg_event_trigger_ddl_commands() AS c
    WHERE NOT c.in_extension AND c.schema_name IS DISTINCT FROM 'pg_temp'
      AND c.object_type IN {WATCHED_TYPES}
"""
CHANGED_BY_DROP = f"""
    SELECT FROM pg_event_trigger_dropped_objects() AS d
    WHERE NOT d.is_temporary AND d.object_type IN {WATCHED_TYPES}
"""


def _function(name: str, changed: str) -> str:
    return _FUNCTION.format(
        schema=WATCH_SCHEMA, name=name, changed=changed, channel=CHANNEL, payload=PAYLOAD
    )


INSTALL = f"""
CREATE SCHEMA IF NOT EXISTS {WATCH_SCHEMA};
COMMENT ON SCHEMA {WATCH_SCHEMA} IS '{WATCH_SCHEMA_COMMENT}';
GRANT USAGE ON SCHEMA {WATCH_SCHEMA} TO PUBLIC;
CREATE SEQUENCE IF NOT EXISTS {WATCH_SCHEMA}.ddl_version;
GRANT SELECT ON SEQUENCE {WATCH_SCHEMA}.ddl_version TO PUBLIC;
{_function("ddl_command_end", CHANGED_BY_COMMAND)}
{_function("sql_drop", CHANGED_BY_DROP)}
DROP EVENT TRIGGER IF EXISTS {TRIGGERS[0]};
CREATE EVENT TRIGGER {TRIGGERS[0]} ON ddl_command_end
    EXECUTE FUNCTION {WATCH_SCHEMA}.ddl_command_end();
DROP EVENT TRIGGER IF EXISTS {TRIGGERS[1]};
CREATE EVENT TRIGGER {TRIGGERS[1]} ON sql_drop EXECUTE FUNCTION {WATCH_SCHEMA}.sql_drop();
"""

# Only what INSTALL created. The schema goes last, on its own and without CASCADE, so that
# anything else someone put into it stays, and the uninstall says so.
UNINSTALL = f"""
DROP EVENT TRIGGER IF EXISTS {TRIGGERS[0]};
DROP EVENT TRIGGER IF EXISTS {TRIGGERS[1]};
DROP FUNCTION IF EXISTS {WATCH_SCHEMA}.ddl_command_end();
DROP FUNCTION IF EXISTS {WATCH_SCHEMA}.sql_drop();
DROP SEQUENCE IF EXISTS {WATCH_SCHEMA}.ddl_version;
"""
UNINSTALL_SCHEMA = f"DROP SCHEMA IF EXISTS {WATCH_SCHEMA}"

# Both triggers present and enabled: what the listener checks on every heartbeat.
INSTALLED = f"""
    SELECT count(*) = 2 FROM pg_event_trigger
    WHERE evtname IN ('{TRIGGERS[0]}', '{TRIGGERS[1]}') AND evtenabled <> 'D'
"""


def install(database: Database, url: str | None = None) -> None:
    """Install (or re-install) the watch, connecting with url if given, else the registered one.

    Raise WatchRefused, naming the privilege needed, when the role may not create event
    triggers; the database then stays in poll mode.
    """
    _run(database, url, INSTALL)
    Database.objects.filter(pk=database.pk).update(
        watch_installed_at=timezone.now(), watch_error=""
    )


def uninstall(database: Database, url: str | None = None) -> None:
    """Remove every object the watch created; the database goes back to poll mode."""
    _run(database, url, UNINSTALL)
    Database.objects.filter(pk=database.pk).update(
        watch_installed_at=None, watch_error="", catalog_version=None
    )
    _run(database, url, UNINSTALL_SCHEMA)


def lost(database: Database, reason: str) -> None:
    """Record that the watch's triggers are gone (dropped by hand): back to poll mode."""
    Database.objects.filter(pk=database.pk).update(watch_installed_at=None, watch_error=reason)


def _run(database: Database, url: str | None, script: str) -> None:
    url = url or database.url
    engine = connections.create_user_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            _execute(connection, script)
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
