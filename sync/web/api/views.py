"""REST API viewsets. List views never reflect: they ask the freshness gate and answer at once."""

from dataclasses import asdict
from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAdminUser
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from sync.changes import gate, listening, progress, watch
from sync.changes.gate import Freshness
from sync.exceptions import QueueUnavailable
from sync.models import Database, LiveQuerySet, ReflectionRun, Schema, Table
from sync.remote import relations
from sync.remote.values import as_text
from sync.web import access, table_listing, table_reads
from sync.web.api import openapi as doc
from sync.web.api.pagination import StrictLimitOffsetPagination
from sync.web.api.renderers import ExactJSONRenderer
from sync.web.api.serializers import (
    DatabaseDetailSerializer,
    DatabaseSerializer,
    ListedTableSerializer,
    ReflectionRunSerializer,
    SchemaSerializer,
    TableSerializer,
    TaskSerializer,
)
from sync.web.query import (
    StrictIdMixin,
    query_bool,
    query_int,
    query_kind,
    query_text,
    query_value,
)


def with_freshness(response: Response, database: Database, freshness: Freshness) -> Response:
    """Say how fresh the listed rows are: when last reflected, and what is under way."""
    reflected_at = database.reflected_at
    response["X-Reflected-At"] = reflected_at.isoformat() if reflected_at else "never"
    response["X-Reflection-Status"] = str(freshness.status)
    return response


DEFAULT_RECORDS_LIMIT = 50
# json and jsonb values written as PostgreSQL holds them (see renderers); the browsable API too.
EXACT_RENDERERS = [ExactJSONRenderer, BrowsableAPIRenderer]


def _listed(serializer: type[Any]) -> dict[int, Any]:
    """Return the documented answers of a list: a page of rows, or an error."""
    return {200: serializer(many=True), **doc.READ_ERRORS}


class ListedDatabaseMixin:
    """Consult the freshness gate for the listed database and say so in the response headers.

    get_queryset calls listed(), so that the gate is asked where the queryset is made (DRF runs
    it for every list); list() adds the headers.
    """

    listed_database: Database
    listed_freshness: Freshness
    # The API's name of each listed field and where the ORM finds it, for the paginator's one
    # query (StrictLimitOffsetPagination.paginate_queryset).
    list_fields: dict[str, str]

    def listed(self, database: Database) -> Database:
        self.listed_database = database
        self.listed_freshness = gate.ensure_fresh(database)
        return database

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Answer one page of rows and their total, read together in one query."""
        rows = self.paginate_queryset(self.get_queryset())  # type: ignore[attr-defined]
        response = self.get_paginated_response(rows)  # type: ignore[attr-defined]
        return with_freshness(response, self.listed_database, self.listed_freshness)


@extend_schema_view(
    list=extend_schema(responses=_listed(DatabaseSerializer)),
    retrieve=extend_schema(
        parameters=[doc.ID], responses={200: DatabaseDetailSerializer, **doc.READ_ERRORS}
    ),
    create=extend_schema(responses={201: DatabaseSerializer, **doc.WRITE_ERRORS}),
)
class DatabaseViewSet(
    StrictIdMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[Database],
):
    """Registered databases. Registering one checks that it answers first."""

    queryset = Database.objects.all()

    def get_queryset(self) -> QuerySet[Database]:
        # Not granted reads as not registered: 404, as for an id that does not exist.
        return access.readable_databases(self.request.user)

    # Any: the runs action serializes the database's ReflectionRun rows, not databases.
    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        if self.action == "runs":
            return ReflectionRunSerializer
        return DatabaseDetailSerializer if self.action == "retrieve" else DatabaseSerializer

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())  # a read-only Mapping in DRF's stubs
        if self.action == "retrieve":
            context["status"] = gate.status_of(self.get_object()).status
        return context

    @extend_schema(
        request=None,
        parameters=[doc.ID],
        responses={
            202: doc.Queued,
            **doc.WRITE_ERRORS,
            503: doc.error("the task queue is unavailable: nothing was queued"),
        },
    )
    @action(detail=True, methods=["post"])
    def reflect(self, request: Request, pk: str | None = None) -> Response:
        """Queue a reflection now (or report the one already queued or running).

        A staff request: it is queued even while the database is backed off after a failure.
        """
        queued = gate.request_reflection(self.get_object(), ReflectionRun.Trigger.API)
        if queued.status == gate.Status.UNAVAILABLE:
            raise QueueUnavailable(gate.describe(queued, "reflection"))
        return Response(
            {"task_id": queued.task_id, "status": str(queued.status)},
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(
        parameters=[doc.ID, doc.LIST_LIMIT, doc.LIST_OFFSET],
        responses={200: ReflectionRunSerializer(many=True), **doc.READ_ERRORS},
    )
    @action(detail=True)
    def runs(self, request: Request, pk: str | None = None) -> Response:
        """The database's reflection history, the latest first."""
        runs = self.paginate_queryset(self.get_object().runs.all())
        return self.get_paginated_response(self.get_serializer(runs, many=True).data)

    @extend_schema(
        request=None, parameters=[doc.ID], responses={200: doc.WatchMode, **doc.WATCH_ERRORS}
    )
    @action(detail=True, methods=["post", "delete"], url_path="watch")
    def watch(self, request: Request, pk: str | None = None) -> Response:
        """Install (POST) or remove (DELETE) the database's DDL watch; answer its watch mode.

        409 when the registered role may not create event triggers: the message names the
        privilege needed, and the database stays in poll mode.
        """
        database = self.get_object()
        if request.method == "DELETE":
            watch.uninstall(database)
        else:
            watch.install(database)
        database.refresh_from_db()
        return Response({"watch_mode": listening.watch_mode(database)})


@extend_schema_view(
    list=extend_schema(parameters=doc.SCHEMA_LIST_PARAMETERS, responses=_listed(SchemaSerializer)),
    retrieve=extend_schema(
        parameters=[doc.ID], responses={200: SchemaSerializer, **doc.READ_ERRORS}
    ),
)
class SchemaViewSet(StrictIdMixin, ListedDatabaseMixin, viewsets.ReadOnlyModelViewSet[Schema]):
    """Schemas of a database. Listing queues a reflection when the last one is not recent."""

    serializer_class = SchemaSerializer
    list_fields = {
        "id": "id", "database": "database_id", "oid": "oid", "name": "name",
        "dropped_at": "dropped_at",
    }  # fmt: skip

    def get_queryset(self) -> QuerySet[Schema]:
        readable = access.readable_databases(self.request.user)
        schemas = access.only_readable(self.request.user, Schema.objects.all())
        if self.action != "list":
            return schemas
        database_id = query_int(self.request.query_params, "database", required=True, least=1)
        database = self.listed(get_object_or_404(readable, pk=database_id))
        schemas = schemas.filter(database=database)
        return (
            schemas if query_bool(self.request.query_params, "include_dropped") else schemas.live()
        )


@extend_schema_view(
    list=extend_schema(
        parameters=doc.TABLE_LIST_PARAMETERS, responses=_listed(ListedTableSerializer)
    ),
    retrieve=extend_schema(
        parameters=[doc.ID], responses={200: TableSerializer, **doc.READ_ERRORS}
    ),
)
class TableViewSet(StrictIdMixin, ListedDatabaseMixin, viewsets.ReadOnlyModelViewSet[Table]):
    """Tables, views and other relations. Listing queues a reflection when not recent."""

    serializer_class = TableSerializer
    list_fields = {
        "id": "id", "database": "database_id", "schema": "schema_id",
        "schema_name": "schema__name", "oid": "oid", "name": "name", "kind": "kind",
        "dropped_at": "dropped_at", "parent": "parent_id", "parent_name": "parent__name",
        "partitions": "partition_count",
    }  # fmt: skip
    ordering = table_listing.Ordering()

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Answer one page of rows; sorted by rows or size, the user's database picks the page.

        With facts=true (or sorted by rows or size), each row carries the facts read from the
        database now; if it does not answer, they are null and X-Facts-Error says why.
        """
        tables = self.get_queryset()
        paginator = self.strict_paginator
        read = None
        if self.ordering.by_facts:
            limit, offset = paginator.get_limit(request), paginator.get_offset(request)
            picked = table_listing.fact_sorted(
                self.listed_database, tables, self.ordering, limit, offset, self.failing
            )
            if not picked.read.error:
                rows = picked_rows(tables, picked.oids, self.list_fields)
                paginator.request, paginator.limit, paginator.offset = request, limit, offset
                paginator.count, read = picked.total, picked.read
            else:
                read = picked.read
                self.ordering = table_listing.Ordering()
        if not self.ordering.by_facts:
            ordered = table_listing.ordered(tables, self.ordering)
            rows = paginator.paginate_queryset(ordered, request, self) or []
        if read is None and query_bool(request.query_params, "facts"):
            oids = [row["oid"] for row in rows]
            read = table_listing.facts_of(self.listed_database, oids, self.failing)
        with_extras(rows, read)
        response = paginator.get_paginated_response(rows)
        if read is not None and read.error:
            # One line: a header may hold no line break, and a driver's message may.
            response["X-Facts-Error"] = " ".join(read.error.split())[:500]
        return with_freshness(response, self.listed_database, self.listed_freshness)

    @property
    def failing(self) -> bool:
        """Whether the listed database failed lately: its facts are not asked for then."""
        return table_listing.failing(self.listed_database, self.listed_freshness.status)

    @property
    def strict_paginator(self) -> StrictLimitOffsetPagination:
        paginator = self.paginator
        if not isinstance(paginator, StrictLimitOffsetPagination):
            raise TypeError("the tables list needs StrictLimitOffsetPagination")
        return paginator

    def get_queryset(self) -> QuerySet[Table]:
        user = self.request.user
        if self.action != "list":
            return access.only_readable(user, Table.objects.select_related("schema", "database"))
        # A listed row shows its schema's name; its database is known by id alone.
        tables = Table.objects.select_related("schema")
        schema_id = query_int(self.request.query_params, "schema", least=1)
        database_id = query_int(
            self.request.query_params, "database", required=schema_id is None, least=1
        )
        if schema_id is not None:
            schemas = access.only_readable(user, Schema.objects.select_related("database"))
            schema = get_object_or_404(schemas, pk=schema_id)
            if database_id is not None and schema.database_id != database_id:
                raise ValidationError(
                    {"schema": [f"schema {schema_id} is not a schema of database {database_id}"]}
                )
            tables, database = tables.filter(schema=schema), schema.database
        else:
            database = get_object_or_404(access.readable_databases(user), pk=database_id)
        return self.filtered(tables.filter(database=self.listed(database)))

    def filtered(self, tables: LiveQuerySet[Table]) -> QuerySet[Table]:
        """Apply kind, search, include_dropped, parent, flat and ordering of the query string.

        Partitions are folded under their parent: parent=ID lists those of one table, flat=true
        lists them all in place; a search finds them too.
        """
        params = self.request.query_params
        self.ordering = table_listing.parse_ordering(query_value(params, "ordering"))
        kind = query_kind(params)
        if kind:
            tables = tables.filter(kind=kind)
        search = query_text(params, "search")
        if search:
            tables = tables.filter(name__icontains=search)
        parent_id = query_int(params, "parent", least=1)
        parent = None
        if parent_id is not None:
            parent = get_object_or_404(
                Table.objects.filter(database=self.listed_database), pk=parent_id
            )
        tables = tables if query_bool(params, "include_dropped") else tables.live()
        return table_listing.folded(tables, parent, query_bool(params, "flat"), search)

    @extend_schema(parameters=[doc.ID], responses={200: doc.Columns, **doc.ON_THE_FLY_ERRORS})
    @action(detail=True)
    def columns(self, request: Request, pk: str | None = None) -> Response:
        """Columns of the table, read from its database now (never stored)."""
        columns = table_reads.read_columns(self.get_object())
        return Response({"columns": [asdict(column) for column in columns]})

    @extend_schema(
        parameters=[doc.ID, doc.RECORDS_LIMIT, doc.RECORDS_OFFSET, doc.AS_TEXT],
        responses={200: doc.Records, **doc.ON_THE_FLY_ERRORS},
    )
    @action(detail=True, renderer_classes=EXACT_RENDERERS)
    def records(self, request: Request, pk: str | None = None) -> Response:
        """A page of the table's rows, read from its database now (never stored).

        Values longer than SYNC_CELL_CHARS are cut, and listed in `cut` with their length.
        """
        limit = query_int(request.query_params, "limit", least=1, most=relations.MAX_LIMIT)
        limit = DEFAULT_RECORDS_LIMIT if limit is None else limit
        offset = query_int(request.query_params, "offset") or 0
        textual = query_bool(request.query_params, "as_text")
        relations.check_page(limit, offset)  # before anything is looked up
        table = self.get_object()
        access.check_records(request.user, table.database)
        page = asdict(table_reads.read_records(table, limit, offset))
        if textual:
            page["rows"] = as_text(page["rows"])
        return Response(page)

    @extend_schema(
        parameters=[doc.ID, doc.VALUE_COLUMN, doc.VALUE_OFFSET, doc.AS_TEXT],
        responses={200: doc.Value, **doc.ON_THE_FLY_ERRORS},
    )
    @action(detail=True, renderer_classes=EXACT_RENDERERS)
    def value(self, request: Request, pk: str | None = None) -> Response:
        """One whole value of the table, by column and row offset, up to SYNC_VALUE_CHARS."""
        name = query_text(request.query_params, "column", most=63)
        if not name:
            raise ValidationError({"column": ["this query parameter is required"]})
        offset = query_int(request.query_params, "offset", required=True) or 0
        textual = query_bool(request.query_params, "as_text")
        table = self.get_object()
        access.check_records(request.user, table.database)
        found = table_reads.read_value(table, name, offset)
        value = as_text(found.value) if textual else found.value
        return Response({**asdict(found), "value": value})


def picked_rows(
    tables: QuerySet[Table], oids: list[int], fields: dict[str, str]
) -> list[dict[str, Any]]:
    """Return the listed rows of these oids as the list's dicts, in the order given."""
    names, paths = zip(*fields.items(), strict=True)
    found = {
        row[names.index("oid")]: dict(zip(names, row, strict=True))
        for row in tables.filter(oid__in=oids).values_list(*paths)
    }
    return [found[oid] for oid in oids if oid in found]


def with_extras(rows: list[dict[str, Any]], read: table_listing.FactsRead | None) -> None:
    """Add each row's partitions in all (nested too) and, if read, its facts."""
    parents = [row["id"] for row in rows if row["partitions"]]
    in_all = table_listing.partitions_in_all(parents)
    for row in rows:
        row["partitions_in_all"] = in_all.get(row["id"], 0)
        if read is not None:
            found = read.facts.get(row["oid"])
            row["facts"] = None if found is None else asdict(found)


class TaskViewSet(viewsets.ViewSet):
    """State and progress of a queued task (staff): an import reports done and total."""

    permission_classes = [IsAdminUser]
    lookup_value_regex = "[0-9a-fA-F-]{32,36}"  # task ids are UUIDs

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "id",
                {"type": "string", "pattern": "^[0-9a-fA-F-]{32,36}$"},
                OpenApiParameter.PATH,
                description="the task id that queuing it answered",
            )
        ],
        responses={
            200: TaskSerializer,
            401: doc.NOT_LOGGED_IN,
            404: doc.error("not a task id"),
            403: doc.error("a user who is not staff"),
            503: doc.error("the result backend is unavailable"),
        },
    )
    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        found = progress.task_progress(str(pk))
        if found is None:
            raise QueueUnavailable("the result backend is unavailable: try again later")
        return Response(TaskSerializer(asdict(found)).data)
