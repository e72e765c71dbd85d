"""Models of registered databases, their schemas and tables, and the reflection history."""

from collections.abc import Iterable
from typing import Self, TypeVar

from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q

from sync import encryption
from sync.remote.connections import Source
from sync.remote.credentials import redact_url

# The collation of migration 0007: names in natural order ("t2" before "t10"), case-insensitive.
NATURAL_COLLATION = "dbsync_natural"


class Database(models.Model):
    """A PostgreSQL database registered with dbsync."""

    name = models.CharField(max_length=63, unique=True)
    # The URL, password included, encrypted with SYNC_SECRET_KEYS (see the url property):
    # a dump of the service database holds no password.
    encrypted_url = models.TextField()
    # Whether the role of the URL was a superuser when last checked (None: never checked).
    role_is_superuser = models.BooleanField(null=True, blank=True)
    # Identity of what the URL pointed at when first reflected: oids mean nothing elsewhere.
    server_identifier = models.CharField(max_length=32, blank=True)
    database_oid = models.BigIntegerField(null=True, blank=True)
    # Fingerprint of the catalog as last applied (catalog.Fingerprint.text), in the same
    # transaction as the rows: while the catalog's is the same, there is nothing to apply.
    catalog_fingerprint = models.CharField(max_length=80, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    imported_at = models.DateTimeField(null=True, blank=True)
    reflected_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    # The DDL watch (sync.changes.watch): when its event triggers were installed, and why it is not
    # installed or was lost (no privilege, dropped by hand), shown beside the watch mode.
    watch_installed_at = models.DateTimeField(null=True, blank=True)
    watch_error = models.TextField(blank=True)
    # The watch's DDL version counter as read just before the catalog last applied: while the
    # counter is the same, no DDL has run since (the renewal's one-row check).
    catalog_version = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def url(self) -> str:
        """The URL, password included: never serialize, log or print it; use redacted_url."""
        return encryption.decrypt(self.encrypted_url, f"the URL of database {self.name!r}")

    @url.setter
    def url(self, value: str) -> None:
        self.encrypted_url = encryption.encrypt(value)

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url) if self.encrypted_url else ""

    @property
    def source(self) -> Source:
        """Where its connections read it: the engines' key in this process, and its URL."""
        return Source(self.id, self.url)


class DatabaseGrant(models.Model):
    """Members of a group may list a database's objects, and read its records if granted."""

    database = models.ForeignKey(Database, on_delete=models.CASCADE, related_name="grants")
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="database_grants")
    records = models.BooleanField(
        default=False, help_text="Members may also read the rows of its tables and views."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["database", "group"], name="one_grant_per_group")
        ]

    def __str__(self) -> str:
        return f"{self.group} on {self.database}" + (" (records)" if self.records else "")


# Any model that has a dropped_at: the schemas' and the tables' querysets.
_Reflected = TypeVar("_Reflected", bound="ReflectedObject")


class LiveQuerySet(models.QuerySet[_Reflected]):
    def live(self) -> Self:
        """The objects not dropped: "live" means that, and only that."""
        return self.filter(dropped_at__isnull=True)

    def live_counts(self, database_ids: Iterable[int] | None = None) -> dict[int, int]:
        """Return the number of live objects of each database (of these ids), in one query.

        The admin's changelist counts by a subquery per row instead, to sort by the counts.
        """
        rows = (
            self.live() if database_ids is None else self.live().filter(database__in=database_ids)
        )
        grouped = rows.order_by().values_list("database").annotate(n=models.Count("id"))
        return dict(grouped)


class ReflectedObject(models.Model):
    """An object of a registered database, identified by its oid there while it lives."""

    database = models.ForeignKey(Database, on_delete=models.CASCADE, related_name="%(class)ss")
    oid = models.BigIntegerField()
    name = models.CharField(max_length=63)
    dropped_at = models.DateTimeField(null=True, blank=True)

    objects = LiveQuerySet.as_manager()

    class Meta:
        abstract = True
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["database", "oid"],
                condition=Q(dropped_at__isnull=True),
                name="%(class)s_live_oid_unique",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Schema(ReflectedObject):
    """A schema (namespace) of a registered database."""


class Table(ReflectedObject):
    """A relation (table, view, ...) of a registered database."""

    class Kind(models.TextChoices):
        TABLE = "table"
        PARTITIONED_TABLE = "partitioned_table"
        VIEW = "view"
        MATERIALIZED_VIEW = "materialized_view"
        FOREIGN_TABLE = "foreign_table"

    # No constraint of its own: the schema's already ties a table to its database, and each
    # constraint costs a deferred check per row at commit (0.4 s for 100,000 new tables).
    database = models.ForeignKey(
        Database, on_delete=models.CASCADE, related_name="tables", db_constraint=False
    )
    schema = models.ForeignKey(Schema, on_delete=models.CASCADE, related_name="tables")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # The partitioned table this one is a partition of (None for any other relation). No
    # constraint: a reflection writes parents and partitions in one set-based statement each.
    parent = models.ForeignKey(
        "self",
        on_delete=models.DO_NOTHING,
        related_name="partitions",
        null=True,
        blank=True,
        db_constraint=False,
    )

    class Meta(ReflectedObject.Meta):
        indexes = [
            models.Index(
                fields=["parent"],
                condition=Q(parent__isnull=False, dropped_at__isnull=True),
                name="table_live_partitions",
            )
        ]


class ReflectionRun(models.Model):
    """One reflection of a database: what started it, how it ended, what it changed."""

    class Trigger(models.TextChoices):
        LIST = "list"  # a list or page found the recency key expired
        LIVE = "live"  # a columns or records read found the table renamed or gone
        API = "api"  # POST databases/ID/reflect/
        ADMIN = "admin"  # the admin's "Reflect now"
        PAGE = "page"  # the Refresh button of the web pages
        LISTENER = "listener"  # a DDL notice from the database's event triggers
        POLL = "poll"  # the periodic check found the catalog changed
        RENEWAL = "renewal"  # the periodic renewal of databases nobody lists
        IMPORT = "import"
        COMMAND = "command"  # manage.py reflect, demo

    class Outcome(models.TextChoices):
        RUNNING = "running"
        SUCCESS = "success"
        FAILED = "failed"
        REFUSED = "refused"

    database = models.ForeignKey(Database, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)
    added = models.IntegerField(default=0)
    renamed = models.IntegerField(default=0)
    moved = models.IntegerField(default=0)
    dropped = models.IntegerField(default=0)
    recreated = models.IntegerField(default=0)
    unchanged = models.IntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["database", "-started_at"])]

    def __str__(self) -> str:
        return f"{self.database} {self.started_at:%Y-%m-%d %H:%M:%S} {self.outcome}"
