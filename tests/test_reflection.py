"""Reflection against real PostgreSQL databases: every kind of change, matched by oid."""

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from sync.encryption import encrypt
from sync.exceptions import CatalogUnavailable, IdentityChanged
from sync.models import Database, ReflectionRun, Schema, Table
from sync.reflection import names, runs, unchanged
from tests.helpers import ODD_NAMES, ScratchDatabase, create_scratch, quote

pytestmark = pytest.mark.django_db


def reflect(database: Database, accept_new_identity: bool = False) -> dict[str, Any]:
    return runs.reflect(database.id, accept_new_identity=accept_new_identity).as_dict()


def live_tables(database: Database) -> dict[str, Table]:
    rows = Table.objects.live().filter(database=database).select_related("schema")
    return {f"{row.schema.name}.{row.name}": row for row in rows}


def live_schema_names(database: Database) -> set[str]:
    return set(Schema.objects.live().filter(database=database).values_list("name", flat=True))


def test_first_reflection_adds_every_kind_of_relation(registered, user_db):
    user_db.execute(
        """
        CREATE SCHEMA sales;
        CREATE TABLE sales.orders (id int PRIMARY KEY);
        CREATE VIEW sales.big_orders AS SELECT id FROM sales.orders WHERE id > 100;
        CREATE MATERIALIZED VIEW sales.order_count AS SELECT count(*) FROM sales.orders;
        CREATE TABLE sales.events (at date) PARTITION BY RANGE (at);
        CREATE TABLE sales.events_2026 PARTITION OF sales.events
            FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
        CREATE SEQUENCE sales.not_listed;
        CREATE INDEX not_listed_either ON sales.orders (id);
        """
    )

    counts = reflect(registered)

    kinds = {name: table.kind for name, table in live_tables(registered).items()}
    assert kinds == {
        "sales.orders": "table",
        "sales.big_orders": "view",
        "sales.order_count": "materialized_view",
        "sales.events": "partitioned_table",
        "sales.events_2026": "table",
    }
    assert live_schema_names(registered) == {"public", "sales"}
    assert counts["added"] == 7
    assert Table.objects.get(name="orders").oid == user_db.oid_of("sales.orders")


def test_foreign_table_is_listed(registered, user_db):
    user_db.execute(
        """
        CREATE FOREIGN DATA WRAPPER dummy_wrapper;
        CREATE SERVER dummy_server FOREIGN DATA WRAPPER dummy_wrapper;
        CREATE FOREIGN TABLE remote_things (id int) SERVER dummy_server;
        """
    )
    reflect(registered)
    assert live_tables(registered)["public.remote_things"].kind == "foreign_table"


def test_rename_table_keeps_row_id(registered, user_db):
    user_db.execute("CREATE TABLE before (id int)")
    reflect(registered)
    row_id = live_tables(registered)["public.before"].id

    user_db.execute("ALTER TABLE before RENAME TO after")
    counts = reflect(registered)

    assert list(live_tables(registered)) == ["public.after"]
    assert live_tables(registered)["public.after"].id == row_id
    assert (counts["renamed"], counts["added"], counts["dropped"]) == (1, 0, 0)


def test_rename_schema_keeps_schema_and_table_rows(registered, user_db):
    user_db.execute("CREATE SCHEMA old_name; CREATE TABLE old_name.things (id int)")
    reflect(registered)
    schema_id = Schema.objects.get(name="old_name").id
    table_id = live_tables(registered)["old_name.things"].id

    user_db.execute("ALTER SCHEMA old_name RENAME TO new_name")
    counts = reflect(registered)

    assert live_schema_names(registered) == {"public", "new_name"}
    assert Schema.objects.get(name="new_name").id == schema_id
    assert live_tables(registered)["new_name.things"].id == table_id
    assert (counts["renamed"], counts["unchanged"]) == (1, 2)


def test_move_table_to_another_schema_keeps_row_id(registered, user_db):
    user_db.execute("CREATE SCHEMA archive; CREATE TABLE invoices (id int)")
    reflect(registered)
    table_id = live_tables(registered)["public.invoices"].id

    user_db.execute("ALTER TABLE invoices SET SCHEMA archive")
    counts = reflect(registered)

    moved = live_tables(registered)["archive.invoices"]
    assert moved.id == table_id
    assert moved.schema == Schema.objects.get(name="archive")
    assert counts["moved"] == 1


def test_drop_table_soft_deletes_row(registered, user_db):
    user_db.execute("CREATE TABLE doomed (id int); CREATE TABLE kept (id int)")
    reflect(registered)
    doomed_id = live_tables(registered)["public.doomed"].id

    user_db.execute("DROP TABLE doomed")
    counts = reflect(registered)

    assert list(live_tables(registered)) == ["public.kept"]
    assert Table.objects.get(id=doomed_id).dropped_at is not None
    assert counts["dropped"] == 1


def test_drop_schema_cascade_soft_deletes_schema_and_its_tables(registered, user_db):
    user_db.execute(
        "CREATE SCHEMA temp_work; CREATE TABLE temp_work.a (id int);"
        " CREATE VIEW temp_work.b AS SELECT 1 AS one"
    )
    reflect(registered)

    user_db.execute("DROP SCHEMA temp_work CASCADE")
    counts = reflect(registered)

    assert live_schema_names(registered) == {"public"}
    assert live_tables(registered) == {}
    assert Table.objects.filter(dropped_at__isnull=False).count() == 2
    assert Schema.objects.get(name="temp_work").dropped_at is not None
    assert counts["dropped"] == 3


def test_drop_and_recreate_keeps_row_and_takes_new_oid(registered, user_db):
    user_db.execute("CREATE TABLE phoenix (id int)")
    reflect(registered)
    row_id = live_tables(registered)["public.phoenix"].id

    user_db.execute("DROP TABLE phoenix; CREATE VIEW phoenix AS SELECT 1 AS id")
    counts = reflect(registered)

    row = live_tables(registered)["public.phoenix"]
    assert row.id == row_id
    assert row.oid == user_db.oid_of("public.phoenix")
    assert row.kind == "view"
    assert (counts["recreated"], counts["added"], counts["dropped"]) == (1, 0, 0)


def test_drop_and_recreate_schema_keeps_rows(registered, user_db):
    user_db.execute("CREATE SCHEMA cycle; CREATE TABLE cycle.t (id int)")
    reflect(registered)
    schema_id = Schema.objects.get(name="cycle").id
    table_id = live_tables(registered)["cycle.t"].id

    user_db.execute("DROP SCHEMA cycle CASCADE; CREATE SCHEMA cycle; CREATE TABLE cycle.t (id int)")
    counts = reflect(registered)

    assert Schema.objects.live().get(name="cycle").id == schema_id
    assert live_tables(registered)["cycle.t"].id == table_id
    assert counts["recreated"] == 2


def test_second_reflection_without_change_writes_nothing(registered, user_db):
    user_db.execute("CREATE SCHEMA s; CREATE TABLE s.a (id int); CREATE VIEW s.b AS SELECT 1")
    reflect(registered)

    def row_versions() -> list[tuple[int, str]]:
        # xmin changes with every write of a row: equal xmins mean nothing was written.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, xmin::text FROM sync_table UNION ALL"
                " SELECT -id, xmin::text FROM sync_schema ORDER BY 1"
            )
            return cursor.fetchall()

    before = row_versions()
    counts = reflect(registered)

    assert row_versions() == before
    assert counts["unchanged"] == 4
    assert sum(counts[key] for key in ("added", "renamed", "moved", "dropped", "recreated")) == 0


def test_the_fingerprint_of_the_applied_catalog_is_kept_and_follows_changes(registered, user_db):
    user_db.execute("CREATE TABLE a (id int)")
    reflect(registered)
    registered.refresh_from_db()
    first = registered.catalog_fingerprint
    assert first.startswith("2:")  # public and a

    user_db.execute("ALTER TABLE a RENAME TO b")  # same count, another name
    assert reflect(registered)["renamed"] == 1
    registered.refresh_from_db()
    assert registered.catalog_fingerprint not in ("", first)

    user_db.execute("ALTER TABLE b RENAME TO a")  # back to the first catalog
    assert reflect(registered)["renamed"] == 1
    registered.refresh_from_db()
    assert registered.catalog_fingerprint == first


def test_a_catalog_back_to_what_this_process_last_saw_still_gets_what_another_applied(
    registered, user_db
):
    user_db.execute("CREATE TABLE a (id int)")
    reflect(registered)
    assert reflect(registered)["unchanged"] == 2
    # What this process knew then, kept while another process applies a table added...
    knew_then = dict(unchanged._known)
    assert knew_then
    user_db.execute("CREATE TABLE b (id int)")
    reflect(registered)
    unchanged._known.update(knew_then)
    # ...and the table is dropped again: the catalog is the one this process last saw.
    user_db.execute("DROP TABLE b")

    counts = reflect(registered)

    assert counts["dropped"] == 1
    assert list(live_tables(registered)) == ["public.a"]
    assert reflect(registered)["unchanged"] == 2  # and the next run confirms it unlocked


@pytest.mark.parametrize("name", ODD_NAMES.values(), ids=ODD_NAMES.keys())
def test_odd_identifiers_are_reflected_exactly(registered, user_db, name):
    quoted = quote(name)
    user_db.execute(f"CREATE SCHEMA {quoted}; CREATE TABLE {quoted}.{quoted} (id int)")

    reflect(registered)
    assert f"{name}.{name}" in live_tables(registered)

    user_db.execute(f'ALTER TABLE {quoted}.{quoted} RENAME TO "renamed"')
    counts = reflect(registered)
    assert f"{name}.renamed" in live_tables(registered)
    assert counts["renamed"] == 1


def test_two_databases_with_overlapping_oids_stay_apart(
    registered, user_db, scratch_factory: list[ScratchDatabase]
):
    user_db.execute("CREATE TABLE shared_shape (id int)")
    twin = create_scratch(template=user_db.name)  # a byte copy: the same oids
    scratch_factory.append(twin)
    twin_database = Database.objects.create(name="twin", encrypted_url=encrypt(twin.url))
    assert twin.oid_of("shared_shape") == user_db.oid_of("shared_shape")

    reflect(registered)
    reflect(twin_database)
    user_db.execute("ALTER TABLE shared_shape RENAME TO only_in_first")
    reflect(registered)
    reflect(twin_database)

    assert list(live_tables(registered)) == ["public.only_in_first"]
    assert list(live_tables(twin_database)) == ["public.shared_shape"]


def test_unreachable_database_changes_nothing_and_records_error(registered, user_db):
    user_db.execute("CREATE TABLE survivor (id int)")
    reflect(registered)
    Database.objects.filter(pk=registered.pk).update(
        encrypted_url=encrypt("postgresql://someone:topsecret@127.0.0.1:1/nowhere")
    )

    with pytest.raises(CatalogUnavailable) as raised:
        reflect(registered)

    assert "topsecret" not in str(raised.value)
    assert list(live_tables(registered)) == ["public.survivor"]
    registered.refresh_from_db()
    assert "127.0.0.1" in registered.last_error
    assert "topsecret" not in registered.last_error
    run = ReflectionRun.objects.filter(database=registered).first()
    assert run is not None
    assert run.outcome == "failed"
    assert "topsecret" not in run.error


def test_database_whose_identity_changed_is_refused(
    registered, user_db, scratch_factory: list[ScratchDatabase]
):
    user_db.execute("CREATE TABLE original (id int)")
    # Another database restored in its place: same objects, same oids, another database.
    replacement = create_scratch(template=user_db.name)
    scratch_factory.append(replacement)
    replacement.execute("ALTER TABLE original RENAME TO replaced")
    reflect(registered)
    Database.objects.filter(pk=registered.pk).update(encrypted_url=encrypt(replacement.url))

    with pytest.raises(IdentityChanged, match="--accept-new-identity"):
        reflect(registered)

    assert list(live_tables(registered)) == ["public.original"]
    assert ReflectionRun.objects.filter(database=registered)[0].outcome == "refused"


def test_an_identical_database_restored_in_place_is_refused_too(
    registered, user_db, scratch_factory: list[ScratchDatabase]
):
    user_db.execute("CREATE TABLE original (id int)")
    replacement = create_scratch(template=user_db.name)  # same objects, same oids
    scratch_factory.append(replacement)
    reflect(registered)
    Database.objects.filter(pk=registered.pk).update(encrypted_url=encrypt(replacement.url))

    with pytest.raises(IdentityChanged):
        reflect(registered)


def test_accepting_a_new_identity_matches_rows_by_name(
    registered, user_db, scratch_factory: list[ScratchDatabase]
):
    user_db.execute("CREATE TABLE a (id int); CREATE TABLE b (id int)")
    reflect(registered)
    ids = {name: row.id for name, row in live_tables(registered).items()}
    other = create_scratch()
    scratch_factory.append(other)
    # Created in the other order, so the oids of a and b are traded between them.
    other.execute("CREATE TABLE b (id int); CREATE TABLE a (id int); CREATE TABLE c (id int)")
    Database.objects.filter(pk=registered.pk).update(encrypted_url=encrypt(other.url))

    counts = reflect(registered, accept_new_identity=True)

    tables = live_tables(registered)
    assert {name: row.id for name, row in tables.items() if name != "public.c"} == ids
    assert tables["public.a"].oid == other.oid_of("a")
    assert (counts["recreated"], counts["added"]) == (3, 1)  # public, a, b; c
    reflect(registered)  # and the new identity is now the accepted one


def test_name_cache_holds_new_name_after_rename(
    registered, user_db, django_capture_on_commit_callbacks: Callable
):
    user_db.execute("CREATE SCHEMA s; CREATE TABLE s.old (id int)")
    with django_capture_on_commit_callbacks(execute=True):
        reflect(registered)
    oid = user_db.oid_of("s.old")
    assert names.lookup(registered.id, oid) is None  # a new name is cached when first read
    names.remember(registered.id, {oid: ("s", "old")})

    user_db.execute("ALTER TABLE s.old RENAME TO new; ALTER SCHEMA s RENAME TO t")
    with django_capture_on_commit_callbacks(execute=True):
        reflect(registered)

    assert names.lookup(registered.id, oid) == ("t", "new")


def test_statement_count_does_not_grow_with_the_number_of_objects(
    registered, user_db, django_assert_max_num_queries: Callable
):
    user_db.execute(
        "DO $$ BEGIN FOR i IN 1..300 LOOP"
        " EXECUTE format('CREATE TABLE t%s (id int)', i); END LOOP; END $$"
    )
    with django_assert_max_num_queries(12):
        reflect(registered)
    user_db.execute(
        "DO $$ BEGIN FOR i IN 1..100 LOOP"
        " EXECUTE format('ALTER TABLE t%s RENAME TO r%s', i, i);"
        " EXECUTE format('DROP TABLE t%s', i + 100);"
        " EXECUTE format('CREATE TABLE n%s (id int)', i); END LOOP; END $$"
    )
    # A change writes its events too, in a bounded number more: the rows they replace (2), the
    # live rows they name (2) and the batch of events (1).
    with django_assert_max_num_queries(12 + 5):
        counts = reflect(registered)
    assert (counts["renamed"], counts["dropped"], counts["added"]) == (100, 100, 100)


def test_a_run_of_unchanged_reflections_is_one_history_row(user_db, registered):
    user_db.execute("CREATE TABLE t (id int)")
    runs.reflect(registered.id)
    for _ in range(3):
        runs.reflect(registered.id)
    user_db.execute("CREATE TABLE u (id int)")
    runs.reflect(registered.id)
    runs.reflect(registered.id)

    rows = list(registered.runs.order_by("started_at", "id"))

    assert [(row.added, row.repeats) for row in rows] == [(2, 1), (0, 3), (1, 1), (0, 1)]
    assert rows[1].first_started_at is not None
    assert rows[1].first_started_at < rows[1].started_at
