"""Models of registered databases, their schemas and tables, and the reflection history."""

from collections.abc import Iterable
from typing import Self, TypeVar

from django.contrib.auth.models import Group
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from sync import encryption
from sync.remote.connections import Source
from sync.remote.credentials import redact_url

# The collation of migration 0007: names in natural order ("t2" before "t10"), case-insensitive.
NATURAL_COLLATION = "dbsync_natural"


class WatchSignal(models.TextChoices):
    """How the watch tells the listener of a change: NOTIFY at commit, or nothing at all (the
    listener polls the counter every SYNC_LISTEN_POLL_MS). A transaction that sent NOTIFY
    cannot be prepared (two-phase commit): a server that allows prepared transactions polls."""

    NOTIFY = "notify"
    COUNTER = "counter"


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
    # How the watch signals a change (WatchSignal), chosen at install.
    watch_signal = models.CharField(max_length=8, blank=True)
    # How far the watch's change log is applied, in the same transaction as the rows
    # (sync.remote.changelog): the highest id read, the snapshot it was read in (entries of
    # transactions still open then come later with lower ids), and the log's cap-trim mark then.
    # No position: the log cannot vouch for what changed, so the next run is a full one.
    log_position = models.BigIntegerField(null=True, blank=True)
    log_snapshot = models.TextField(blank=True)
    log_trimmed = models.BigIntegerField(null=True, blank=True)

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

    # No constraints in the database: each costs a deferred check per row at commit (0.4 s for
    # 100,000 new tables, two fifths of a first import's time). The writes insert and move
    # tables only by a join with their live schema row, and Django cascades the deletes.
    database = models.ForeignKey(
        Database, on_delete=models.CASCADE, related_name="tables", db_constraint=False
    )
    schema = models.ForeignKey(
        Schema, on_delete=models.CASCADE, related_name="tables", db_constraint=False
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # The partitioned table this one is a partition of (None for any other relation). No
    # constraint: a reflection writes parents and partitions in one set-based statement each.
    # No index of every row's parent either, only the live partitions' (Meta): the other one
    # took a sixth of a first import's writes (100,000 relations: 556 ms -> 460 ms).
    parent = models.ForeignKey(
        "self",
        on_delete=models.DO_NOTHING,
        related_name="partitions",
        null=True,
        blank=True,
        db_constraint=False,
        db_index=False,
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
        RECONNECT = "reconnect"  # the listener (re)connected: it may have missed notices
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
    # Whether it read only the objects its change log named (the rest of the catalog unread).
    targeted = models.BooleanField(default=False)
    # A run of successful reflections that changed nothing is one row: how many, and when the
    # first began (started_at and finished_at are the last's).
    repeats = models.PositiveIntegerField(default=1)
    first_started_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["database", "-started_at"])]

    def __str__(self) -> str:
        return f"{self.database} {self.started_at:%Y-%m-%d %H:%M:%S} {self.outcome}"


class ChangeEvent(models.Model):
    """One change a reflection applied to a schema or relation: what, and, where known, who.

    The object is kept by its model id, so a renamed or moved object keeps its history
    together. The actor comes from the watch's change log; where none vouches for the change
    (poll mode, a full reflection), `role` is empty and `time_seen` says that `occurred_at` is
    when dbsync saw it, not when it happened. Nothing of the statement text is kept.
    """

    class Kind(models.TextChoices):
        CREATED = "created"
        RENAMED = "renamed"
        MOVED = "moved"
        DROPPED = "dropped"
        RECREATED = "recreated"
        ALTERED = "altered"  # a logged ALTER that changed no name (a column added, say)

    # No constraints in the database (the ORM still cascades), and no index of a column alone
    # (the composite indexes below serve every read): each costs a check or an index entry per
    # row, and a storm's events are written by the thousand (bench/change_feed.py).
    database = models.ForeignKey(
        Database, on_delete=models.CASCADE, related_name="change_events", db_constraint=False,
        db_index=False,
    )  # fmt: skip
    # The run that recorded it: its id groups the unlogged events of one reflection. Runs and
    # events go after the same retention period, so nothing is cascaded to.
    run = models.ForeignKey(
        ReflectionRun, on_delete=models.DO_NOTHING, null=True, blank=True, related_name="events",
        db_constraint=False, db_index=False,
    )  # fmt: skip
    # A schema's own event names it in `schema`; a relation's names its schema (after) too.
    schema = models.ForeignKey(
        Schema, on_delete=models.CASCADE, null=True, blank=True, related_name="events",
        db_constraint=False, db_index=False,
    )  # fmt: skip
    table = models.ForeignKey(
        Table, on_delete=models.CASCADE, null=True, blank=True, related_name="events",
        db_constraint=False, db_index=False,
    )  # fmt: skip
    object_type = models.CharField(max_length=20)  # "schema" or the relation's kind
    kind = models.CharField(max_length=16, choices=Kind.choices)
    oid = models.BigIntegerField()
    name_before = models.CharField(max_length=63, blank=True)
    name_after = models.CharField(max_length=63, blank=True)
    schema_before = models.CharField(max_length=63, blank=True)
    schema_after = models.CharField(max_length=63, blank=True)
    occurred_at = models.DateTimeField()
    time_seen = models.BooleanField(
        default=False, help_text="occurred_at is when dbsync saw the change, not its statement time"
    )
    recorded_at = models.DateTimeField()
    # Who, from the change log (empty: unknown, never guessed).
    role = models.CharField(max_length=63, blank=True)
    application = models.CharField(max_length=64, blank=True)
    client_addr = models.GenericIPAddressField(null=True, blank=True)
    backend_pid = models.IntegerField(null=True, blank=True)
    command_tag = models.CharField(max_length=64, blank=True)
    xid = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["database", "-id"]),
            models.Index(fields=["table", "-id"]),
            models.Index(fields=["schema", "-id"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.schema_after or self.schema_before}.{self.name_after}"

    @property
    def actor_known(self) -> bool:
        return bool(self.role)

    @property
    def group_key(self) -> str:
        """The transaction it belongs to: its xid where logged, else the run that saw it."""
        return f"xid-{self.xid}" if self.xid is not None else f"run-{self.run_id}"


class EventBatch(models.Model):
    """A reflection's events, described in its transaction, waiting for the change feed.

    A reflection writes its events as one row, in one statement whatever their number; the
    change feed's task (on the webhooks queue) turns each batch into ChangeEvent rows and the
    webhooks' deliveries, in one transaction, and deletes it. A batch is as durable as the
    changes it describes, and writing a thousand events costs the reflection one row, not a
    thousand rows and their index entries (bench/change_feed.py).
    """

    database = models.ForeignKey(
        Database, on_delete=models.CASCADE, related_name="event_batches", db_constraint=False,
        db_index=False,
    )  # fmt: skip
    run = models.ForeignKey(
        ReflectionRun, on_delete=models.DO_NOTHING, null=True, blank=True, related_name="+",
        db_constraint=False, db_index=False,
    )  # fmt: skip
    recorded_at = models.DateTimeField()
    # A JSON array of rows in the order of sync.reflection.events.COLUMNS, sorted by time: text,
    # which PostgreSQL stores without parsing until the feed reads it.
    rows = models.TextField()
    count = models.IntegerField()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["database", "id"])]

    def __str__(self) -> str:
        return f"{self.count} events of {self.database_id} at {self.recorded_at:%H:%M:%S}"


class Webhook(models.Model):
    """A URL that receives each transaction's change events of one database, or of all."""

    url = models.URLField(max_length=2000)
    # The signing secret, encrypted with SYNC_SECRET_KEYS as the database URLs are.
    encrypted_secret = models.TextField()
    database = models.ForeignKey(
        Database,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="webhooks",
        help_text="Empty: every database.",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.url} ({self.database or 'all databases'})"

    @property
    def secret(self) -> str:
        return encryption.decrypt(self.encrypted_secret, f"the secret of webhook {self.id}")

    @secret.setter
    def secret(self, value: str) -> None:
        self.encrypted_secret = encryption.encrypt(value)


class WebhookDelivery(models.Model):
    """One transaction's events, owed to one webhook: written with the events (an outbox)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"  # gave up after SYNC_WEBHOOK_MAX_ATTEMPTS; the admin re-sends it

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    database = models.ForeignKey(Database, on_delete=models.CASCADE, related_name="deliveries")
    event_ids = ArrayField(models.BigIntegerField())
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.IntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["webhook", "database", "status", "id"])]

    def __str__(self) -> str:
        return f"delivery {self.id} to {self.webhook_id}: {self.status}"
