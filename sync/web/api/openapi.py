"""What the OpenAPI schema says of the API: parameters with their bounds, and error answers."""

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

from sync.models import Table
from sync.remote import relations
from sync.web.query import MAX_SEARCH, MAX_WHOLE
from sync.web.table_listing import SORT_KEYS


def whole(least: int, most: int = MAX_WHOLE) -> dict[str, Any]:
    return {"type": "integer", "minimum": least, "maximum": most}


ID = OpenApiParameter(
    "id", whole(1), OpenApiParameter.PATH, description="id of the object; 1 to 18 digits"
)
DATABASE = OpenApiParameter("database", whole(1), description="id of the database")
SCHEMA = OpenApiParameter("schema", whole(1), description="id of a schema of that database")
KIND = OpenApiParameter("kind", str, enum=Table.Kind.values, description="kind of relation")
SEARCH = OpenApiParameter(
    "search",
    {"type": "string", "maxLength": MAX_SEARCH, "pattern": "^[^\\x00]*$"},
    description="part of the name, any case; no NUL character",
)
INCLUDE_DROPPED = OpenApiParameter(
    "include_dropped", {"type": "string", "enum": ["true", "false", "1", "0"]},
    description="list dropped objects too; false unless given",
)  # fmt: skip
RECORDS_LIMIT = OpenApiParameter(
    "limit",
    whole(1, relations.MAX_LIMIT),
    description=f"rows, 1 to {relations.MAX_LIMIT}; 50 if not given",
)
RECORDS_OFFSET = OpenApiParameter("offset", whole(0), description="rows to skip; 0 if not given")
AS_TEXT = OpenApiParameter(
    "as_text", {"type": "string", "enum": ["true", "false", "1", "0"]},
    description="numbers and json values as strings of their exact text (for clients that "
    "read JSON numbers as doubles); false unless given",
)  # fmt: skip
VALUE_COLUMN = OpenApiParameter(
    "column",
    {"type": "string", "minLength": 1, "maxLength": 63, "pattern": "^[^\\x00]*$"},
    required=True,
    description="name of the column",
)
VALUE_OFFSET = OpenApiParameter(
    "offset", whole(0), required=True, description="the row's offset in the records' order"
)
LIST_LIMIT = OpenApiParameter(
    "limit", whole(1, 1000), description="rows, 1 to 1000; 100 if not given"
)
LIST_OFFSET = OpenApiParameter("offset", whole(0), description="rows to skip; 0 if not given")

SCHEMA_LIST_PARAMETERS = [
    OpenApiParameter(
        "database", whole(1), required=True, description="id of the database (required)"
    ),
    INCLUDE_DROPPED,
]
TABLE_LIST_PARAMETERS = [
    OpenApiParameter(
        "database", whole(1), description="id of the database; required unless schema is given"
    ),
    OpenApiParameter(
        "schema", whole(1), description="id of the schema; if database is given too, a schema of it"
    ),
    KIND,
    SEARCH,
    INCLUDE_DROPPED,
    OpenApiParameter(
        "parent", whole(1), description="id of a partitioned table: list its partitions"
    ),
    OpenApiParameter(
        "flat",
        {"type": "string", "enum": ["true", "false", "1", "0"]},
        description="list partitions in place instead of folded under their parent; false "
        "unless given",
    ),
    OpenApiParameter(
        "ordering",
        {"type": "string", "enum": [*SORT_KEYS, *(f"-{key}" for key in SORT_KEYS)]},
        description="sort key, - for descending; name (natural, any case) if not given",
    ),
    OpenApiParameter(
        "facts",
        {"type": "string", "enum": ["true", "false", "1", "0"]},
        description="read each row's estimated rows, size, columns and comment now",
    ),
]

Error = inline_serializer(
    "Error",
    {
        "code": serializers.CharField(
            help_text="stable, machine-readable: invalid, not_found, not_authenticated, "
            "authentication_failed, permission_denied, invalid_database_url, not_populated, "
            "read_failed, read_timed_out, write_refused, database_unavailable, "
            "queue_unavailable, ..."
        ),
        "detail": serializers.CharField(help_text="what went wrong and what to change"),
        "fields": serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()),
            required=False,
            help_text="for code invalid: the messages of each bad parameter or field",
        ),
    },
)


def error(description: str) -> OpenApiResponse:
    return OpenApiResponse(Error, description=description)


BAD_INPUT = error("a malformed, out-of-bounds, repeated or contradicting parameter or field")
NOT_LOGGED_IN = error("no or wrong credentials")
FORBIDDEN = error("a write by a user who is not staff")
UNKNOWN = error("no such object")

READ_ERRORS: dict[int, OpenApiResponse] = {400: BAD_INPUT, 401: NOT_LOGGED_IN, 404: UNKNOWN}
ON_THE_FLY_ERRORS: dict[int, OpenApiResponse] = {
    **READ_ERRORS,
    403: error("reading the relation tried to write (a view calling a writing function)"),
    409: error("a materialized view not populated yet: REFRESH MATERIALIZED VIEW it first"),
    502: error("the database answered with an error reading the relation"),
    503: error("the database did not answer, or the read outran SYNC_STATEMENT_TIMEOUT"),
}
UNSUPPORTED_BODY = error("a body in a media type the endpoint does not take, or unreadable as one")
WRITE_ERRORS: dict[int, OpenApiResponse] = {
    400: BAD_INPUT, 401: NOT_LOGGED_IN, 403: FORBIDDEN, 404: UNKNOWN, 415: UNSUPPORTED_BODY
}  # fmt: skip

COLUMN_FIELDS: dict[str, serializers.Field[Any, Any, Any, Any]] = {
    "position": serializers.IntegerField(),
    "name": serializers.CharField(),
    "type": serializers.CharField(help_text="as PostgreSQL writes it"),
    "nullable": serializers.BooleanField(),
    "default": serializers.CharField(allow_null=True),
    "primary_key": serializers.BooleanField(),
}
Columns = inline_serializer(
    "Columns", {"columns": inline_serializer("Column", COLUMN_FIELDS, many=True)}
)
Records = inline_serializer(
    "Records",
    {
        "columns": serializers.ListField(child=serializers.CharField()),
        "rows": serializers.ListField(
            child=serializers.ListField(child=serializers.JSONField(allow_null=True)),
            help_text="values in column order, in their exact form",
        ),
        "cut": inline_serializer(
            "Cut",
            {
                "row": serializers.IntegerField(help_text="index of the row in rows"),
                "column": serializers.CharField(),
                "octets": serializers.IntegerField(
                    help_text="bytes of the whole value's text (UTF-8)"
                ),
            },
            many=True,
            help_text="values longer than cell_chars: each is given as the first cell_chars "
            "characters of its text; GET tables/ID/value/ reads one whole",
        ),
        "cell_chars": serializers.IntegerField(help_text="SYNC_CELL_CHARS"),
        "count": serializers.IntegerField(),
        "count_is_estimate": serializers.BooleanField(),
        "ordered_by": serializers.ListField(child=serializers.CharField()),
        "limit": serializers.IntegerField(
            help_text="the rows read: fewer than asked where the page would pass SYNC_PAGE_CHARS"
        ),
        "offset": serializers.IntegerField(),
    },
)
Value = inline_serializer(
    "Value",
    {
        "column": serializers.CharField(),
        "offset": serializers.IntegerField(),
        "value": serializers.JSONField(allow_null=True, help_text="in its exact form"),
        "octets": serializers.IntegerField(
            allow_null=True, help_text="bytes of its whole text where it is cut, else null"
        ),
        "cut": serializers.BooleanField(
            help_text="true where its text is longer than SYNC_VALUE_CHARS: value holds the "
            "first SYNC_VALUE_CHARS characters"
        ),
    },
)
Queued = inline_serializer(
    "Queued",
    {
        "task_id": serializers.CharField(allow_null=True),
        "status": serializers.ChoiceField(choices=["queued", "running", "failed"]),
    },
)

WatchMode = inline_serializer(
    "WatchMode",
    {
        "watch_mode": serializers.ChoiceField(
            choices=["listen", "poll", "off"],
            help_text="listen: triggers and a connected listener; poll: checked every "
            "SYNC_POLL_INTERVAL seconds; off: neither",
        )
    },
)
WATCH_ERRORS: dict[int, OpenApiResponse] = {
    **WRITE_ERRORS,
    409: error("the role may not create event triggers (the message names what it needs), "
               "or the watch's schema holds objects of someone else"),
    503: error("the database did not answer"),
}  # fmt: skip
