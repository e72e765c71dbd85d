"""Fixtures: scratch PostgreSQL databases to reflect, registered with dbsync."""

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg2
import pytest
from django.core.cache import cache
from psycopg2 import sql

from sync import demo, registry
from sync.models import Database


def server_url(dbname: str) -> str:
    """Return a URL to a database on the server that holds the service database."""
    url = demo.server_url(dbname).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def admin_connection(dbname: str = "postgres") -> "psycopg2.extensions.connection":
    connection = psycopg2.connect(server_url(dbname))
    connection.autocommit = True
    return connection


@dataclass
class ScratchDatabase:
    """A real database created for one test; run DDL on it with execute()."""

    name: str

    @property
    def url(self) -> str:
        return server_url(self.name)

    def execute(self, statement: str) -> None:
        with admin_connection(self.name) as connection, connection.cursor() as cursor:
            cursor.execute(statement)
        connection.close()

    def oid_of(self, qualified: str) -> int:
        with admin_connection(self.name) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT %s::regclass::oid", [qualified])
            (oid,) = cursor.fetchone()
        connection.close()
        return int(oid)


def create_scratch(template: str = "template0") -> ScratchDatabase:
    name = f"dbsync_scratch_{uuid.uuid4().hex[:12]}"
    connection = admin_connection()
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    connection.close()
    return ScratchDatabase(name)


def drop_scratch(scratch: ScratchDatabase) -> None:
    connection = admin_connection()
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch.name))
        )
    connection.close()


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
def registered(db: None, user_db: ScratchDatabase) -> Database:
    database, _ = registry.register("userdb", user_db.url)
    return database


@pytest.fixture(autouse=True)
def clear_cache() -> None:
    cache.clear()
