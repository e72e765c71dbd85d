"""DRF serializers: the API's view of databases, schemas and tables (never a password)."""

from typing import Any

from rest_framework import serializers

from sync import registry
from sync.credentials import redact_url
from sync.exceptions import SecretUnreadable, SyncError
from sync.models import Database, Schema, Table


class DatabaseSerializer(serializers.ModelSerializer):
    url = serializers.CharField(
        write_only=True, help_text="postgresql://user:password@host:port/database"
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
    schemas = serializers.SerializerMethodField()
    tables = serializers.SerializerMethodField()

    class Meta(DatabaseSerializer.Meta):
        fields = [*DatabaseSerializer.Meta.fields, "status", "schemas", "tables"]

    def get_status(self, database: Database) -> str:
        return str(self.context["status"])

    def get_schemas(self, database: Database) -> int:
        return Schema.objects.live().filter(database=database).count()

    def get_tables(self, database: Database) -> int:
        return Table.objects.live().filter(database=database).count()


class SchemaSerializer(serializers.ModelSerializer):
    class Meta:
        model = Schema
        fields = ["id", "database", "oid", "name", "dropped_at"]


class TableSerializer(serializers.ModelSerializer):
    schema_name = serializers.CharField(source="schema.name", read_only=True)

    class Meta:
        model = Table
        fields = ["id", "database", "schema", "schema_name", "oid", "name", "kind", "dropped_at"]
