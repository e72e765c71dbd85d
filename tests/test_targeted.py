"""Targeted reflection against the full one as the oracle: random DDL, then a targeted run, then
a full run that must find nothing."""

import random
from dataclasses import asdict

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sync import metrics
from sync.changes import watch
from sync.models import Database, ReflectionRun
from sync.reflection import runs, unchanged
from sync.reflection.diff import Counts
from sync.remote.changelog import WATCH_SCHEMA
from tests.helpers import ScratchDatabase, admin_connection

pytestmark = pytest.mark.django_db

LISTENER = ReflectionRun.Trigger.LISTENER
LIST = ReflectionRun.Trigger.LIST
RENEWAL = ReflectionRun.Trigger.RENEWAL


@pytest.fixture
def watched(registered: Database, user_db: ScratchDatabase) -> Database:
    user_db.execute(
        "CREATE SCHEMA a; CREATE SCHEMA b; CREATE TABLE a.t0 (id int); CREATE TABLE b.t0 (id int);"
        " CREATE TABLE a.parent (id int) PARTITION BY RANGE (id);"
        " CREATE TABLE a.part1 PARTITION OF a.parent FOR VALUES FROM (0) TO (10)"
    )
    watch.install(registered)
    runs.reflect(registered.id)
    registered.refresh_from_db()
    return registered


def nothing_changed(counts: Counts) -> bool:
    changed = asdict(counts)
    changed.pop("unchanged")
    return not any(changed.values())


class RandomDDL:
    """Random DDL over a few schemas, every statement valid for the catalog as it stands."""

    def __init__(self, user_db: ScratchDatabase, seed: int) -> None:
        self.user_db = user_db
        self.random = random.Random(seed)  # noqa: S311 - a seeded, repeatable choice of DDL
        self.count = 0

    def tables(self) -> list[tuple[str, str, str]]:
        with admin_connection(self.user_db.name) as connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT n.nspname, c.relname, c.relkind FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname IN ('a', 'b', 'c') AND c.relkind IN ('r', 'v', 'p')"
                " AND NOT c.relispartition ORDER BY 1, 2"
            )
            rows = cursor.fetchall()
        connection.close()
        return rows

    def statement(self) -> str:
        self.count += 1
        n = self.count
        tables = self.tables()
        pick = self.random.choice(tables) if tables else None
        choices = ["create", "view"]
        if pick is not None:
            choices += ["rename", "move", "drop", "recreate", "replace_view", "column"]
        choices += ["schema_cycle", "partition"]
        kind = self.random.choice(choices)
        schema = self.random.choice(["a", "b"])
        if kind == "create" or pick is None:
            return f"CREATE TABLE {schema}.n{n} (id int)"
        if kind == "view":
            return f"CREATE VIEW {schema}.v{n} AS SELECT {n} AS x"
        if kind == "schema_cycle":
            return (
                f"CREATE SCHEMA IF NOT EXISTS c; CREATE TABLE c.s{n} (id int);"
                f" ALTER SCHEMA c RENAME TO c{n}; ALTER SCHEMA c{n} RENAME TO c;"
                + (" DROP SCHEMA c CASCADE" if self.random.random() < 0.5 else "")
            )
        if kind == "partition":
            return (
                f"CREATE TABLE a.p{n} (id int); ALTER TABLE a.parent ATTACH PARTITION a.p{n}"
                f" FOR VALUES FROM ({n * 10 + 100}) TO ({n * 10 + 110});"
                f" ALTER TABLE a.parent DETACH PARTITION a.p{n}"
            )
        s, name, relkind = pick
        target = f"{s}.{name}"
        if kind == "replace_view" and relkind == "v":
            return f"CREATE OR REPLACE VIEW {target} AS SELECT {n} AS x"
        if relkind == "p" or name == "parent":
            return f"CREATE TABLE {schema}.n{n} (id int)"
        if kind == "rename":
            verb = "VIEW" if relkind == "v" else "TABLE"
            return f"ALTER {verb} {target} RENAME TO r{n}"
        if kind == "move":
            other = "b" if s == "a" else "a"
            verb = "VIEW" if relkind == "v" else "TABLE"
            return f"ALTER {verb} {target} RENAME TO m{n}; ALTER {verb} {s}.m{n} SET SCHEMA {other}"
        if kind == "drop":
            return f"DROP {'VIEW' if relkind == 'v' else 'TABLE'} {target} CASCADE"
        if kind == "recreate":
            return f"DROP {'VIEW' if relkind == 'v' else 'TABLE'} {target} CASCADE;" + (
                f" CREATE TABLE {target} (id int)"
            )
        if relkind == "r":
            return f"ALTER TABLE {target} ADD COLUMN c{n} int"
        return f"CREATE TABLE {schema}.n{n} (id int)"


@pytest.mark.parametrize("seed", [1, 2, 3], ids=["seed1", "seed2", "seed3"])
def test_targeted_runs_end_where_a_full_run_finds_nothing(watched, user_db, seed):
    ddl = RandomDDL(user_db, seed)
    drift_before = metrics.LOG_DRIFT._value.get()
    for _ in range(8):
        for _ in range(ddl.random.randint(1, 4)):
            user_db.execute(ddl.statement())

        targeted = runs.reflect(watched.id, trigger=LISTENER)
        full = runs.reflect(watched.id, trigger=RENEWAL)

        assert targeted.targeted
        assert targeted.entries
        assert not full.targeted
        assert nothing_changed(full.counts), full.counts
    assert metrics.LOG_DRIFT._value.get() == drift_before


def test_add_column_costs_no_full_read(watched, user_db):
    user_db.execute("ALTER TABLE a.t0 ADD COLUMN extra int")

    result = runs.reflect(watched.id, trigger=LISTENER)

    assert result.targeted
    assert [e.command_tag for e in result.entries] == ["ALTER TABLE"]
    assert result.counts == Counts(unchanged=2)  # the table and its schema


def test_drop_schema_cascade_drops_its_rows(watched, user_db):
    user_db.execute("DROP SCHEMA a CASCADE")

    result = runs.reflect(watched.id, trigger=LISTENER)

    assert result.targeted
    assert result.counts.dropped == 4  # the schema, t0, parent, part1
    assert not watched.schemas.live().filter(name="a").exists()
    assert watched.tables.live().count() == 1


def test_the_log_trimmed_past_the_position_forces_a_full_run(watched, user_db):
    user_db.execute("CREATE TABLE a.lost (id int)")
    with admin_connection(user_db.name) as connection, connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {WATCH_SCHEMA}.change_log")  # as the cap would have
        cursor.execute(f"SELECT setval('{WATCH_SCHEMA}.log_trimmed', 1000)")
    connection.close()

    result = runs.reflect(watched.id, trigger=LISTENER)

    assert not result.targeted
    assert result.counts.added == 1
    assert runs.reflect(watched.id, trigger=LISTENER).targeted  # the position is whole again


def test_a_new_identity_is_a_full_run(watched, user_db):
    user_db.execute("CREATE TABLE a.n (id int)")

    result = runs.reflect(watched.id, trigger=LISTENER, accept_new_identity=True)

    assert not result.targeted


def parent_name(database: Database, schema: str, name: str) -> str | None:
    table = database.tables.live().select_related("parent").get(schema__name=schema, name=name)
    return table.parent.name if table.parent else None


def test_a_partition_of_another_schema_attached_and_detached_follows_its_parent(watched, user_db):
    user_db.execute("ALTER TABLE a.parent ATTACH PARTITION b.t0 FOR VALUES FROM (10) TO (20)")
    attached = runs.reflect(watched.id, trigger=LISTENER)
    assert attached.targeted
    assert parent_name(watched, "b", "t0") == "parent"
    assert parent_name(watched, "a", "part1") == "parent"

    user_db.execute("ALTER TABLE a.parent DETACH PARTITION b.t0")
    runs.reflect(watched.id, trigger=LISTENER)
    assert parent_name(watched, "b", "t0") is None
    assert parent_name(watched, "a", "part1") == "parent"

    assert nothing_changed(runs.reflect(watched.id, trigger=RENEWAL).counts)


def test_runs_that_find_nothing_logged_are_one_history_row_and_keep_the_fingerprint(
    watched, user_db
):
    fingerprint = watched.catalog_fingerprint  # from the full first run
    results = []
    for _ in range(3):
        user_db.execute("SELECT txid_current()")  # another client's transaction: a new snapshot
        with CaptureQueriesContext(connection) as queries:
            results.append(runs.reflect(watched.id, trigger=LIST))  # a list's expired key
        # Each confirmed by the log without taking the database's lock.
        assert not [q for q in queries.captured_queries if "FOR UPDATE" in q["sql"]]

    assert all(result.targeted and nothing_changed(result.counts) for result in results)
    latest = ReflectionRun.objects.filter(database=watched).order_by("-started_at", "-id")[0]
    assert (latest.trigger, latest.targeted, latest.repeats) == (LIST, True, 3)
    watched.refresh_from_db()
    # Nothing logged since the full run: its fingerprint still describes the models, and the
    # renewal compares with it instead of reading the catalog whole.
    assert watched.catalog_fingerprint == fingerprint
    assert runs.reflect(watched.id, trigger=RENEWAL).counts.unchanged > 0

    user_db.execute("CREATE TABLE a.later (id int)")
    assert watched.id in unchanged._known
    assert runs.reflect(watched.id, trigger=LISTENER).counts.added == 1
    # A notice says a change is known: reflected under the lock at once, with no check first
    # (a check that found the entry would have dropped what the process knew of the row).
    assert watched.id in unchanged._known
    watched.refresh_from_db()
    assert watched.catalog_fingerprint == ""  # the models moved on from the catalog it read
