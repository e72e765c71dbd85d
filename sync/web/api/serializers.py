"""DRF serializers: the API's view of databases, schemas and tables (never a password)."""

from typing import Any

from rest_framework import serializers

from sync.changes import listening
from sync.exceptions import SecretUnreadable, SyncError
from sync.models import ChangeEvent, Database, ReflectionRun, Schema, Table
from sync.reflection import registry
from sync.remote.credentials import redact_url


class DatabaseSerializer(serializers.ModelSerializer[Database]):
    url = serializers.CharField(
        write_only=True,
        min_length=1,
        max_length=2000,
        help_text="postgresql://user:password@host:port/database",
    )
    location = serializers.SerializerMethodField(help_text="the URL with its password hidden")

    class Meta:
        model = Database
        fields = [
            "id", "name", "url", "location", "role_is_superuser", "created_at", "imported_at",
            "reflected_at", "last_error", "last_error_at",
        ]  # fmt: skip
        read_only_fields = [
            "role_is_superuser", "created_at", "imported_at", "reflected_at", "last_error",
            "last_error_at",
        ]  # fmt: skip

    def get_location(self, database: Database) -> str:
        try:
            return redact_url(database.url)
        except SecretUnreadable:
            # One unreadable row must not fail the whole list; its reads say why (503).
            return "(unreadable: its key is missing from SYNC_SECRET_KEYS)"

    def validate_name(self, name: str) -> str:
        try:
            return registry.validate_name(name)
        except SyncError as error:
            raise serializers.ValidationError(str(error)) from None

    def create(self, validated_data: dict[str, Any]) -> Database:
        try:
            database, _ = registry.register(
                validated_data["name"], validated_data["url"], check=True
            )
        except SyncError as error:
            raise serializers.ValidationError({"url": [str(error)]}) from None
        return database


class DatabaseDetailSerializer(DatabaseSerializer):
    status = serializers.SerializerMethodField()
    watch_mode = serializers.SerializerMethodField(
        help_text="listen: event triggers and a connected listener show each change within a "
        "second; poll: the catalog is checked every SYNC_POLL_INTERVAL seconds; off: neither"
    )
    schemas = serializers.SerializerMethodField()
    tables = serializers.SerializerMethodField()

    class Meta(DatabaseSerializer.Meta):
        fields = [
            *DatabaseSerializer.Meta.fields, "status", "watch_mode", "watch_error", "schemas",
            "tables",
        ]  # fmt: skip
        read_only_fields = [*DatabaseSerializer.Meta.read_only_fields, "watch_error"]

    def get_status(self, database: Database) -> str:
        return str(self.context["status"])

    def get_watch_mode(self, database: Database) -> str:
        return listening.watch_mode(database)

    def get_schemas(self, database: Database) -> int:
        return Schema.objects.live_counts([database.id]).get(database.id, 0)

    def get_tables(self, database: Database) -> int:
        return Table.objects.live_counts([database.id]).get(database.id, 0)


class SchemaSerializer(serializers.ModelSerializer[Schema]):
    class Meta:
        model = Schema
        fields = ["id", "database", "oid", "name", "dropped_at"]


class TableSerializer(serializers.ModelSerializer[Table]):
    schema_name = serializers.CharField(source="schema.name", read_only=True)
    parent_name = serializers.CharField(
        source="parent.name", read_only=True, allow_null=True, default=None,
        help_text="the partitioned table it is a partition of",
    )  # fmt: skip

    class Meta:
        model = Table
        fields = [
            "id", "database", "schema", "schema_name", "oid", "name", "kind", "dropped_at",
            "parent", "parent_name",
        ]  # fmt: skip


class FactsSerializer(serializers.Serializer[dict[str, Any]]):
    oid = serializers.IntegerField()
    rows = serializers.IntegerField(
        allow_null=True, help_text="the planner's estimate; null before any ANALYZE and for views"
    )
    size = serializers.IntegerField(allow_null=True, help_text="bytes, indexes and TOAST included")
    columns = serializers.IntegerField()
    comment = serializers.CharField(allow_null=True)


class ListedTableSerializer(TableSerializer):
    """A row of the tables list: with its partitions' counts and, if asked, its facts."""

    partitions = serializers.IntegerField(help_text="partitions right under it")
    partitions_in_all = serializers.IntegerField(help_text="partitions under it, nested included")
    facts = FactsSerializer(
        required=False, allow_null=True,
        help_text="with facts=true or ordering by rows or size: read now; null if not read",
    )  # fmt: skip

    class Meta(TableSerializer.Meta):
        fields = [*TableSerializer.Meta.fields, "partitions", "partitions_in_all", "facts"]


class ReflectionRunSerializer(serializers.ModelSerializer[ReflectionRun]):
    trigger_display = serializers.CharField(source="get_trigger_display", read_only=True)
    duration_ms = serializers.SerializerMethodField()

    class Meta:
        model = ReflectionRun
        fields = [
            "id", "trigger", "trigger_display", "started_at", "finished_at", "duration_ms",
            "outcome", "added", "renamed", "moved", "dropped", "recreated", "unchanged", "error",
            "targeted", "repeats", "first_started_at",
        ]  # fmt: skip

    def get_duration_ms(self, run: ReflectionRun) -> int | None:
        if run.finished_at is None:
            return None
        return round((run.finished_at - run.started_at).total_seconds() * 1000)


class TaskSerializer(serializers.Serializer[dict[str, Any]]):
    id = serializers.CharField()
    state = serializers.CharField(
        help_text="PENDING (queued, or unknown: reflections keep no result), STARTED, "
        "PROGRESS, SUCCESS, FAILURE or RETRY"
    )
    done = serializers.IntegerField(allow_null=True)
    total = serializers.IntegerField(allow_null=True)
    current = serializers.CharField(help_text="the database being imported")
    result = serializers.DictField(allow_null=True)
    error = serializers.CharField()


class ChangeEventSerializer(serializers.ModelSerializer[ChangeEvent]):
    """One change event; the client's address and pid for staff only."""

    actor_known = serializers.BooleanField(
        read_only=True, help_text="false where no change log vouches for it: role is then empty"
    )
    transaction = serializers.CharField(
        source="group_key",
        read_only=True,
        help_text="the events of one transaction share it: xid-<xid> where logged, else "
        "run-<id> of the reflection that saw them",
    )
    client_addr = serializers.IPAddressField(
        read_only=True, allow_null=True, required=False, help_text="staff only"
    )
    backend_pid = serializers.IntegerField(
        read_only=True, allow_null=True, required=False, help_text="staff only"
    )

    class Meta:
        model = ChangeEvent
        fields = [
            "id", "database", "schema", "table", "object_type", "kind", "oid", "name_before",
            "name_after", "schema_before", "schema_after", "occurred_at", "time_seen",
            "recorded_at", "actor_known", "role", "application", "command_tag", "xid",
            "transaction", "client_addr", "backend_pid",
        ]  # fmt: skip
        read_only_fields = fields

    def to_representation(self, instance: ChangeEvent) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        request = self.context.get("request")
        if not (request and request.user.is_staff):
            del data["client_addr"], data["backend_pid"]
        return data
