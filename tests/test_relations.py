"""On-the-fly reads against real PostgreSQL databases: columns, records, counts and safety."""

import itertools
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from sync.exceptions import (
    CatalogUnavailable,
    InvalidPage,
    ReadFailed,
    ReadTimedOut,
    TableNotFound,
    WriteRefused,
)
from sync.remote import catalog, connections
from sync.remote.connections import Source
from sync.remote.relations import (
    Column,
    Cut,
    RecordsPage,
    Relation,
    current_name,
    read_columns,
    read_records,
    read_value,
)
from sync.remote.values import RawJSON
from tests.helpers import ODD_NAMES, ScratchDatabase, admin_connection, one_row, quote

# Keys of engines in sync.remote.connections' per-process cache; far above the ids of registered
# databases.
_keys = itertools.count(900_000)


def scalar(scratch: ScratchDatabase, statement: str) -> Any:
    with admin_connection(scratch.name) as connection, connection.cursor() as cursor:
        cursor.execute(statement)
        (value,) = one_row(cursor)
    connection.close()
    return value


@pytest.fixture
def key(user_db: ScratchDatabase) -> Iterator[int]:
    """Give the test its own engine key; close the engine's connections afterwards."""
    engine_key = next(_keys)
    yield engine_key
    connections.engine(Source(engine_key, user_db.url)).dispose()


def records(
    key: int, scratch: ScratchDatabase, schema: str, name: str, limit: int = 50, offset: int = 0
) -> RecordsPage:
    oid = scratch.oid_of(f"{quote(schema)}.{quote(name)}")
    return read_records(Source(key, scratch.url), Relation(oid, schema, name), limit, offset)


def with_password(url: str) -> tuple[str, str]:
    """Return the URL with a password, and the password: the URL's own, or one made up."""
    parsed = make_url(url)
    if parsed.password:
        return url, str(parsed.password)
    # A server that trusts local connections, as the test server does, ignores it.
    return parsed.set(password="s3cret-pw").render_as_string(hide_password=False), "s3cret-pw"


def test_columns_give_position_type_nullability_default_and_key(key, user_db):
    user_db.execute(
        """
        CREATE TABLE orders (
            id serial,
            code varchar(12) NOT NULL DEFAULT 'none',
            gone int,
            price numeric(8, 2),
            doubled numeric GENERATED ALWAYS AS (price * 2) STORED,
            tags text[],
            PRIMARY KEY (code, id)
        );
        ALTER TABLE orders DROP COLUMN gone;
        """
    )

    columns = read_columns(Source(key, user_db.url), user_db.oid_of("orders"))

    assert columns == [
        Column(1, "id", "integer", False, "nextval('orders_id_seq'::regclass)", True),
        Column(2, "code", "character varying(12)", False, "'none'::character varying", True),
        Column(4, "price", "numeric(8,2)", True, None, False),
        Column(5, "doubled", "numeric", True, None, False),
        Column(6, "tags", "text[]", True, None, False),
    ]


@pytest.mark.parametrize("name", ODD_NAMES.values(), ids=ODD_NAMES.keys())
def test_odd_identifiers_are_read_exactly(key, user_db, name):
    q = quote(name)
    user_db.execute(
        f"CREATE SCHEMA {q}; CREATE TABLE {q}.{q} ({q} int PRIMARY KEY, value text);"
        f" INSERT INTO {q}.{q} VALUES (2, 'two'), (1, 'one')"
    )
    oid = user_db.oid_of(f"{q}.{q}")

    assert [column.name for column in read_columns(Source(key, user_db.url), oid)] == [
        name,
        "value",
    ]
    assert current_name(Source(key, user_db.url), oid) == (name, name)
    page = records(key, user_db, name, name)
    assert page.columns == (name, "value")
    assert page.rows == [[1, "one"], [2, "two"]]
    assert page.ordered_by == (name,)


@pytest.mark.parametrize(
    ("kind", "ordered_by"),
    [("VIEW", ()), ("MATERIALIZED VIEW", ("ctid",))],
    ids=["view", "materialized-view"],
)
def test_views_and_materialized_views_are_readable(key, user_db, kind, ordered_by):
    user_db.execute(
        "CREATE TABLE base (id int PRIMARY KEY, label text);"
        " INSERT INTO base VALUES (1, 'a'), (2, 'b');"
        f' CREATE {kind} "Shouting View" AS'
        ' SELECT id, upper(label) AS "Label" FROM base ORDER BY id'
    )
    oid = user_db.oid_of('"Shouting View"')

    assert [column.type for column in read_columns(Source(key, user_db.url), oid)] == [
        "integer",
        "text",
    ]
    page = records(key, user_db, "public", "Shouting View")
    assert (page.columns, page.rows) == (("id", "Label"), [[1, "A"], [2, "B"]])
    assert (page.count, page.count_is_estimate, page.ordered_by) == (2, False, ordered_by)


VALUES = {
    "id": (1, "1"),
    "big": ("numeric", "12345678901234567890.123456789012345678"),
    "tiny": ("numeric", "0.0000001"),
    "scaled": ("numeric(12, 4)", "1.5"),
    "whole": ("bigint", "9223372036854775807"),
    "ratio": ("float8", "0.1"),
    "not_a_number": ("float8", "'NaN'"),
    "beyond": ("float4", "'-Infinity'"),
    "flag": ("boolean", "true"),
    "at": ("timestamptz", "'2026-03-01 12:34:56.789+00'"),
    "day": ("date", "'2026-03-01'"),
    "far_days": ("date[]", "'{infinity,10000-01-01,0044-03-15 BC}'"),
    "clock": ("time", "'23:59:59.5'"),
    "span": ("interval", "'1 year 2 mons 3 days 04:05:06'"),
    "ints": ("int[]", "'{1,NULL,3}'"),
    "words": ("text[]", """ARRAY['a,b', 'say "hi"', NULL]"""),
    "grid": ("int[]", "'{{1,2},{3,4}}'"),
    "amounts": ("numeric[]", "'{1.50,2}'"),
    "tokens": ("uuid[]", "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'"),
    "doc": ("json", """'{"b": [1, 2.5], "a": null}'"""),
    "bin": ("jsonb", """'{"k": "v"}'"""),
    "raw": ("bytea", "'\\x00ff10'"),
    "token": ("uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"),
    "address": ("inet", "'192.168.0.1/24'"),
    "range": ("int4range", "int4range(1, 5)"),
    "feeling": ("mood", "'happy'"),
    "cost": ("price", "2.5"),
    "spans": ("interval[]", "'{1 day,-2 hours}'"),
    "stamps": ("stamp[]", "'{2026-03-01 00:00+00,infinity}'"),
    "docs": ("jsonb[]", """ARRAY['{"n": 2.50}'::jsonb, NULL]"""),
    "labels": ("label_list", "'{a,b}'"),
}

RENDERED = {
    "id": 1,
    "big": "12345678901234567890.123456789012345678",
    "tiny": "0.0000001",
    "scaled": "1.5000",
    "whole": 9223372036854775807,
    "ratio": 0.1,
    "not_a_number": "NaN",
    "beyond": "-Infinity",
    "flag": True,
    "at": "2026-03-01T18:04:56.789+05:30",
    "day": "2026-03-01",
    "far_days": ["infinity", "10000-01-01", "0044-03-15 BC"],
    "clock": "23:59:59.5",
    "span": "P1Y2M3DT4H5M6S",
    "ints": [1, None, 3],
    "words": ["a,b", 'say "hi"', None],
    "grid": [[1, 2], [3, 4]],
    "amounts": ["1.50", "2"],
    "tokens": ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"],
    "doc": RawJSON('{"b": [1, 2.5], "a": null}'),
    "bin": RawJSON('{"k": "v"}'),
    "raw": "\\x00ff10",
    "token": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "address": "192.168.0.1/24",
    "range": "[1,5)",
    "feeling": "happy",
    "cost": "2.50",
    "spans": ["P1D", "PT-2H"],
    "stamps": ["2026-03-01T05:30:00+05:30", "infinity"],
    "docs": [RawJSON('{"n": 2.50}'), None],
    "labels": ["a", "b"],
}


def test_values_are_rendered_to_json_exactly(key, user_db):
    # A zone with a half-hour offset shows that timestamps keep theirs.
    user_db.execute(f"ALTER DATABASE {user_db.name} SET TimeZone TO 'Asia/Kolkata'")
    definitions = ", ".join(f"{name} {kind}" for name, (kind, _) in VALUES.items() if name != "id")
    literals = ", ".join(literal for _, literal in VALUES.values())
    user_db.execute(
        "CREATE TYPE mood AS ENUM ('sad', 'happy');"
        " CREATE DOMAIN price AS numeric(10, 2); CREATE DOMAIN stamp AS timestamptz;"
        " CREATE DOMAIN label_list AS text[];"
        f" CREATE TABLE kinds (id int PRIMARY KEY, {definitions});"
        f" INSERT INTO kinds VALUES ({literals}); INSERT INTO kinds (id) VALUES (2)"
    )

    page = records(key, user_db, "public", "kinds")

    assert page.columns == tuple(VALUES)
    assert dict(zip(page.columns, page.rows[0], strict=True)) == RENDERED
    assert page.rows[1] == [2] + [None] * (len(VALUES) - 1)
    json.dumps(page.rows, allow_nan=False)


# JSON numbers a double cannot hold: out of its range, below its precision, more digits.
EXACT_JSON = [
    '{"x": 1e400}',
    '{"x": 1e-400}',
    '{"x": 2.50}',
    "[3.14159265358979323846264338327950288]",
]


def test_json_and_jsonb_keep_every_digit_of_their_numbers(key, user_db):
    user_db.execute("CREATE TABLE docs (id int PRIMARY KEY, plain json, bin jsonb)")
    for index, document in enumerate(EXACT_JSON):
        literal = document.replace("'", "''")
        user_db.execute(f"INSERT INTO docs VALUES ({index}, '{literal}', '{literal}')")

    page = records(key, user_db, "public", "docs")

    assert [row[1] for row in page.rows] == EXACT_JSON
    # jsonb writes the number PostgreSQL's numeric holds: every digit, in its own spelling.
    assert [row[2] for row in page.rows] == [
        scalar(user_db, f"SELECT bin::text FROM docs WHERE id = {i}") for i in range(4)
    ]
    assert page.rows[2][2] == '{"x": 2.50}'
    assert all(isinstance(value, RawJSON) for row in page.rows for value in row[1:])


def test_a_value_longer_than_the_cell_size_is_cut_in_the_statement_with_its_size(key, user_db):
    user_db.execute(
        "CREATE TABLE big (id int PRIMARY KEY, body text, blob bytea, doc jsonb, n int);"
        " INSERT INTO big VALUES (1, repeat('é', 5000), decode(repeat('ab', 3000), 'hex'),"
        " jsonb_build_object('k', repeat('x', 3000)), 7), (2, 'short', '\\x00', '{}', 8),"
        # 1,500 characters in 3,000 bytes: more bytes than the cell size, not more characters.
        " (3, repeat('é', 1500), NULL, NULL, 9)"
    )

    page = records(key, user_db, "public", "big")

    assert page.cell_chars == 2000
    # The size of each whole value's text in bytes: 5,000 two-byte characters, 3,000 bytes as
    # \x and 6,000 hex digits, the document's 3,009 characters.
    assert page.cut == [Cut(0, "body", 10000), Cut(0, "blob", 6002), Cut(0, "doc", 3009)]
    assert page.rows[2] == [3, "é" * 1500, None, None, 9]
    assert page.rows[0][1] == "é" * 2000
    assert page.rows[0][2] == "\\x" + "ab" * 999
    assert page.rows[0][3] == '{"k": "' + "x" * 1993
    assert page.rows[0][4] == 7
    assert page.rows[1] == [2, "short", "\\x00", RawJSON("{}"), 8]


def test_one_whole_value_is_read_by_column_and_offset(key, user_db):
    user_db.execute(
        "CREATE TABLE big (id int PRIMARY KEY, body text);"
        " INSERT INTO big VALUES (1, 'first'), (2, repeat('y', 100000))"
    )
    relation = Relation(user_db.oid_of("big"), "public", "big")

    found = read_value(Source(key, user_db.url), relation, "body", 1)

    assert (found.value, found.cut, found.octets) == ("y" * 100000, False, None)


def test_a_whole_value_past_its_own_limit_is_cut_there(key, user_db, settings):
    settings.SYNC_VALUE_CHARS = 10_000
    user_db.execute(
        "CREATE TABLE big (id int PRIMARY KEY, body text);"
        " INSERT INTO big VALUES (1, repeat('y', 100000))"
    )
    relation = Relation(user_db.oid_of("big"), "public", "big")

    found = read_value(Source(key, user_db.url), relation, "body", 0)

    assert (found.value, found.cut, found.octets) == ("y" * 10_000, True, 100000)


def test_a_page_of_many_wide_columns_reads_fewer_rows_to_stay_within_its_size(
    key, user_db, settings
):
    settings.SYNC_PAGE_CHARS = 20_000
    columns = ", ".join(f"c{i} text" for i in range(5))
    user_db.execute(
        f"CREATE TABLE wide (id int PRIMARY KEY, {columns});"
        " INSERT INTO wide (id) SELECT generate_series(1, 10)"
    )

    page = records(key, user_db, "public", "wide", limit=10)

    # 6 columns of at most 2000 characters: one row fits in 20,000, two do not.
    assert (page.limit, len(page.rows), page.count) == (1, 1, 10)


def test_relation_without_columns_gives_empty_rows(key, user_db):
    user_db.execute("CREATE TABLE shapeless (); INSERT INTO shapeless DEFAULT VALUES")
    oid = user_db.oid_of("shapeless")

    assert read_columns(Source(key, user_db.url), oid) == []
    page = records(key, user_db, "public", "shapeless")
    assert (page.columns, page.rows, page.count) == ((), [[]], 1)


def test_columns_and_records_follow_a_schema_change_at_once(key, user_db):
    user_db.execute("CREATE TABLE growing (id int PRIMARY KEY); INSERT INTO growing VALUES (1)")
    oid = user_db.oid_of("growing")
    assert records(key, user_db, "public", "growing").columns == ("id",)

    user_db.execute("ALTER TABLE growing ADD COLUMN note text DEFAULT 'added'")

    assert [column.name for column in read_columns(Source(key, user_db.url), oid)] == ["id", "note"]
    page = records(key, user_db, "public", "growing")
    assert (page.columns, page.rows) == (("id", "note"), [[1, "added"]])


BAD_PAGES = {
    "limit-zero": (0, 0),
    "limit-negative": (-5, 0),
    "limit-above-500": (501, 0),
    "offset-negative": (50, -1),
}


@pytest.mark.parametrize(("limit", "offset"), BAD_PAGES.values(), ids=BAD_PAGES.keys())
def test_page_out_of_bounds_is_refused_before_connecting(limit, offset):
    with pytest.raises(InvalidPage):
        read_records(
            Source(next(_keys), "postgresql://x@127.0.0.1:1/none"),
            Relation(1, "s", "t"),
            limit,
            offset,
        )


def test_page_bounds_are_inclusive_and_offset_past_the_end_is_empty(key, user_db):
    user_db.execute(
        "CREATE TABLE numbers (n int PRIMARY KEY);"
        " INSERT INTO numbers SELECT generate_series(1, 600)"
    )

    assert records(key, user_db, "public", "numbers", limit=1).rows == [[1]]
    assert len(records(key, user_db, "public", "numbers", limit=500).rows) == 500
    assert records(key, user_db, "public", "numbers", limit=500, offset=500).rows[-1] == [600]
    beyond = records(key, user_db, "public", "numbers", offset=600)
    assert (beyond.rows, beyond.count, beyond.count_is_estimate) == ([], 600, False)


def test_rows_are_ordered_by_primary_key_in_key_order(key, user_db):
    user_db.execute(
        "CREATE TABLE pairs (a int, b int, PRIMARY KEY (b, a));"
        " INSERT INTO pairs VALUES (2, 1), (1, 2), (3, 1), (1, 1), (2, 2), (3, 2), (0, 3)"
    )

    pages = [records(key, user_db, "public", "pairs", limit=3, offset=at) for at in (0, 3, 6)]

    assert pages[0].ordered_by == ("b", "a")
    rows = [row for page in pages for row in page.rows]
    assert rows == [[1, 1], [2, 1], [3, 1], [1, 2], [2, 2], [3, 2], [0, 3]]


def test_table_without_primary_key_is_paged_by_ctid_without_repeats(key, user_db):
    user_db.execute(
        "CREATE TABLE heap (n int); INSERT INTO heap SELECT generate_series(1, 10);"
        " UPDATE heap SET n = -n WHERE n = 3"  # the updated row moves to the end of the heap
    )

    pages = [records(key, user_db, "public", "heap", limit=4, offset=at) for at in (0, 4, 8)]

    assert pages[0].ordered_by == ("ctid",)
    assert [row[0] for page in pages for row in page.rows] == [1, 2, 4, 5, 6, 7, 8, 9, 10, -3]


def test_partitioned_table_without_key_is_paged_by_partition_then_ctid(key, user_db):
    user_db.execute(
        "CREATE TABLE events (at int) PARTITION BY RANGE (at);"
        " CREATE TABLE events_low PARTITION OF events FOR VALUES FROM (0) TO (10);"
        " CREATE TABLE events_high PARTITION OF events FOR VALUES FROM (10) TO (20);"
        " INSERT INTO events VALUES (15), (5), (12), (1)"
    )

    page = records(key, user_db, "public", "events")

    assert page.ordered_by == ("tableoid", "ctid")
    assert {row[0] for row in page.rows} == {1, 5, 12, 15}
    assert (page.count, page.count_is_estimate) == (4, False)


def test_small_table_is_counted_exactly(key, user_db):
    user_db.execute("CREATE TABLE few (n int); INSERT INTO few SELECT generate_series(1, 7)")

    page = records(key, user_db, "public", "few", limit=2)

    assert (page.count, page.count_is_estimate, len(page.rows)) == (7, False, 2)


def test_large_analyzed_table_count_is_the_catalog_estimate(key, user_db):
    user_db.execute(
        "CREATE TABLE many (n int PRIMARY KEY) WITH (autovacuum_enabled = false);"
        " INSERT INTO many SELECT generate_series(1, 50000); ANALYZE many;"
        " DELETE FROM many WHERE n > 40000"  # the estimate, not a count, is what comes back
    )

    page = records(key, user_db, "public", "many", limit=3)

    reltuples = scalar(user_db, "SELECT reltuples FROM pg_class WHERE relname = 'many'")
    assert (page.count, page.count_is_estimate) == (round(reltuples), True)
    assert 45_000 <= page.count <= 55_000
    assert page.rows == [[1], [2], [3]]


def test_never_analysed_large_table_count_is_the_planner_estimate(key, user_db):
    user_db.execute(
        "CREATE TABLE fresh (n int) WITH (autovacuum_enabled = false);"
        " INSERT INTO fresh SELECT generate_series(1, 3000)"
    )
    assert scalar(user_db, "SELECT reltuples FROM pg_class WHERE relname = 'fresh'") == -1
    oid = user_db.oid_of("fresh")

    page = read_records(
        Source(key, user_db.url), Relation(oid, "public", "fresh"), 5, 0, exact_count_limit=1000
    )

    assert page.count_is_estimate
    assert page.count > 1000


def test_view_count_is_exact_when_small_and_estimated_when_large(key, user_db):
    user_db.execute(
        "CREATE VIEW small AS SELECT generate_series(1, 50) AS n;"
        " CREATE VIEW large AS SELECT generate_series(1, 5000) AS n"
    )
    small = read_records(
        Source(key, user_db.url), Relation(user_db.oid_of("small"), "public", "small"), 10, 0
    )
    large = read_records(
        Source(key, user_db.url),
        Relation(user_db.oid_of("large"), "public", "large"),
        10,
        0,
        exact_count_limit=1000,
    )

    assert (small.count, small.count_is_estimate) == (50, False)
    assert large.count_is_estimate
    assert large.count > 1000
    assert large.rows == [[n] for n in range(1, 11)]


def test_slow_read_is_cancelled_by_the_statement_timeout(key, user_db, settings):
    settings.SYNC_STATEMENT_TIMEOUT = 1
    user_db.execute("CREATE VIEW slow AS SELECT 1 AS one FROM pg_sleep(30)")
    url, password = with_password(user_db.url)

    started = time.monotonic()
    with pytest.raises(ReadTimedOut) as raised:
        read_records(Source(key, url), Relation(user_db.oid_of("slow"), "public", "slow"), 10, 0)

    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert "statement timeout" in message
    assert "SYNC_STATEMENT_TIMEOUT is 1 s" in message
    assert ":***@" in message
    assert password not in message


def test_write_through_a_read_is_refused_and_nothing_is_written(key, user_db):
    user_db.execute(
        """
        CREATE TABLE audit (n int);
        CREATE FUNCTION sneaky() RETURNS int LANGUAGE plpgsql AS
            $$ BEGIN INSERT INTO audit VALUES (1); RETURN 1; END $$;
        CREATE VIEW innocent AS SELECT sneaky() AS n;
        """
    )

    with pytest.raises(WriteRefused, match="read-only transaction"):
        records(key, user_db, "public", "innocent")

    assert scalar(user_db, "SELECT count(*) FROM audit") == 0


def test_failing_view_raises_read_failed(key, user_db):
    user_db.execute("CREATE VIEW broken AS SELECT 1 / 0 AS n")

    with pytest.raises(ReadFailed, match="division by zero"):
        records(key, user_db, "public", "broken")


def test_current_name_follows_rename_and_move(key, user_db):
    user_db.execute("CREATE SCHEMA s; CREATE SCHEMA t; CREATE TABLE s.old (id int)")
    oid = user_db.oid_of("s.old")

    user_db.execute("ALTER TABLE s.old RENAME TO new; ALTER TABLE s.new SET SCHEMA t")

    assert current_name(Source(key, user_db.url), oid) == ("t", "new")
    assert read_records(Source(key, user_db.url), Relation(oid, "t", "new"), 10, 0).columns == (
        "id",
    )


def test_stale_name_is_refused_with_table_not_found(key, user_db):
    user_db.execute("CREATE TABLE before (id int)")
    oid = user_db.oid_of("before")
    user_db.execute("ALTER TABLE before RENAME TO after")

    with pytest.raises(
        TableNotFound, match=re.escape('is "public"."after", not "public"."before"')
    ):
        read_records(Source(key, user_db.url), Relation(oid, "public", "before"), 10, 0)


def test_dropped_table_is_not_found(key, user_db):
    user_db.execute("CREATE TABLE doomed (id int)")
    oid = user_db.oid_of("doomed")
    user_db.execute("DROP TABLE doomed")

    with pytest.raises(TableNotFound):
        read_columns(Source(key, user_db.url), oid)
    with pytest.raises(TableNotFound):
        read_records(Source(key, user_db.url), Relation(oid, "public", "doomed"), 10, 0)
    assert current_name(Source(key, user_db.url), oid) is None


def test_unreachable_database_raises_catalog_unavailable_without_password():
    url = "postgresql://someone:topsecret@127.0.0.1:1/nowhere"

    with pytest.raises(CatalogUnavailable) as raised:
        read_columns(Source(next(_keys), url), 1)

    assert "127.0.0.1" in str(raised.value)
    assert "topsecret" not in str(raised.value)


# A page is read with a statement kept per relation shape; these change the relation after a
# first read, so that the kept statement no longer fits it.


def test_page_and_column_reads_are_one_statement_each(key, user_db, caplog):
    user_db.execute("CREATE TABLE one_trip (id int PRIMARY KEY); INSERT INTO one_trip VALUES (1)")
    oid = user_db.oid_of("one_trip")
    records(key, user_db, "public", "one_trip")  # the first read also reads the shape

    with caplog.at_level(logging.DEBUG, logger="sync.remote.connections"):
        records(key, user_db, "public", "one_trip")
        read_columns(Source(key, user_db.url), oid)

    sent = [record for record in caplog.records if record.msg.startswith("read from")]
    assert len(sent) == 2


def test_page_follows_a_type_change_made_after_a_read(key, user_db):
    user_db.execute(
        "CREATE TABLE shifting (id int PRIMARY KEY, at bigint); INSERT INTO shifting VALUES (1, 0)"
    )
    assert records(key, user_db, "public", "shifting").rows == [[1, 0]]

    user_db.execute(
        "ALTER TABLE shifting ALTER COLUMN at TYPE timestamptz"
        " USING timestamptz 'epoch' + at * interval '1 second'"
    )

    assert records(key, user_db, "public", "shifting").rows == [[1, "1970-01-01T00:00:00+00:00"]]


def test_page_follows_a_primary_key_added_after_a_read(key, user_db):
    user_db.execute(
        "CREATE TABLE keyed_later (n int NOT NULL); INSERT INTO keyed_later VALUES (2), (1)"
    )
    assert records(key, user_db, "public", "keyed_later").ordered_by == ("ctid",)

    user_db.execute("ALTER TABLE keyed_later ADD PRIMARY KEY (n)")

    page = records(key, user_db, "public", "keyed_later")
    assert (page.ordered_by, page.rows) == (("n",), [[1], [2]])


def test_page_follows_a_column_dropped_after_a_read(key, user_db):
    user_db.execute(
        "CREATE TABLE thinning (id int, gone text); INSERT INTO thinning VALUES (1, 'x')"
    )
    assert records(key, user_db, "public", "thinning").columns == ("id", "gone")

    user_db.execute("ALTER TABLE thinning DROP COLUMN gone")

    page = records(key, user_db, "public", "thinning")
    assert (page.columns, page.rows) == (("id",), [[1]])


def test_name_taken_by_another_table_after_a_read_is_not_read(key, user_db):
    user_db.execute("CREATE TABLE first (id int); INSERT INTO first VALUES (1)")
    oid = user_db.oid_of("first")
    read_records(Source(key, user_db.url), Relation(oid, "public", "first"), 10, 0)

    user_db.execute("ALTER TABLE first RENAME TO second; CREATE TABLE first (other text)")

    with pytest.raises(
        TableNotFound, match=re.escape('is "public"."second", not "public"."first"')
    ):
        read_records(Source(key, user_db.url), Relation(oid, "public", "first"), 10, 0)
    assert read_records(
        Source(key, user_db.url), Relation(oid, "public", "second"), 10, 0
    ).rows == [[1]]


def test_table_dropped_after_a_read_is_not_found(key, user_db):
    user_db.execute("CREATE TABLE brief (id int)")
    oid = user_db.oid_of("brief")
    read_records(Source(key, user_db.url), Relation(oid, "public", "brief"), 10, 0)

    user_db.execute("DROP TABLE brief")

    with pytest.raises(TableNotFound):
        read_records(Source(key, user_db.url), Relation(oid, "public", "brief"), 10, 0)


def test_page_past_the_end_of_a_large_table_gives_its_estimate(key, user_db):
    user_db.execute(
        "CREATE TABLE wide_open (n int PRIMARY KEY);"
        " INSERT INTO wide_open SELECT generate_series(1, 2000); ANALYZE wide_open"
    )

    beyond = records(key, user_db, "public", "wide_open", offset=5000)
    small_limit = read_records(
        Source(key, user_db.url),
        Relation(user_db.oid_of("wide_open"), "public", "wide_open"),
        5,
        5000,
        exact_count_limit=100,
    )

    assert (beyond.rows, beyond.count, beyond.count_is_estimate) == ([], 2000, False)
    assert (small_limit.rows, small_limit.count, small_limit.count_is_estimate) == ([], 2000, True)


def test_read_after_the_server_closed_the_connection_succeeds(key, user_db):
    user_db.execute("CREATE TABLE steady (id int); INSERT INTO steady VALUES (1)")
    oid = user_db.oid_of("steady")
    assert records(key, user_db, "public", "steady").rows == [[1]]

    terminated = terminate_dbsync_connections(user_db)

    assert terminated >= 1
    assert records(key, user_db, "public", "steady").rows == [[1]]
    assert [column.name for column in read_columns(Source(key, user_db.url), oid)] == ["id"]
    assert catalog.read_catalog(Source(key, user_db.url)).snapshot is not None
    terminate_dbsync_connections(user_db)
    assert catalog.read_catalog(Source(key, user_db.url)).snapshot is not None


def test_read_after_the_server_closed_every_pooled_connection_succeeds(key, user_db):
    user_db.execute("CREATE TABLE restarted (id int); INSERT INTO restarted VALUES (1)")
    engine = connections.engine(Source(key, user_db.url))
    with engine.connect(), engine.connect():
        pass  # two connections, as many as the pool keeps, now wait in it

    assert terminate_dbsync_connections(user_db) == 2
    # The first dead connection tells: the pool is emptied, not tried one by one.
    assert records(key, user_db, "public", "restarted").rows == [[1]]


def terminate_dbsync_connections(scratch: ScratchDatabase) -> int:
    """Close dbsync's connections to the database from the server's side, as a restart would."""
    return int(
        scalar(
            scratch,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            f" WHERE datname = '{scratch.name}' AND application_name = 'dbsync'",
        )
    )


def test_a_read_that_fails_half_way_leaves_its_connection_outside_any_transaction(key, user_db):
    source = Source(key, user_db.url)
    with pytest.raises(CatalogUnavailable, match="division by zero"):
        connections.read_once(source, "SELECT 1; SELECT 1 / 0", {})
    assert connections.engine(source).pool.checkedin() == 1  # type: ignore[attr-defined]

    rows = connections.read_once(source, "SELECT now() = statement_timestamp()", {})

    # On the failed read's connection, the only one in the pool:
    assert rows == [(True,)]  # a transaction of its own: nothing was left open before it
