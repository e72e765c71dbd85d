"""The Django admin: register databases, watch their state, queue imports and reflections;
change events, webhooks and their deliveries."""

from collections.abc import Callable
from typing import Any, TypeVar

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, IntegerField, Model, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from sync.changes import deliveries, gate, listening, watch
from sync.changes.gate import Freshness, Status
from sync.exceptions import SecretUnreadable, SyncError
from sync.models import (
    ChangeEvent,
    Database,
    DatabaseGrant,
    ReflectionRun,
    Schema,
    Table,
    Webhook,
    WebhookDelivery,
)
from sync.ops import webhook_targets, webhooks
from sync.reflection import registry
from sync.remote import catalog
from sync.web.throttling import LockedAdminAuthenticationForm

# The admin's login says when logins are locked after failures, and for how long.
admin.site.login_form = LockedAdminAuthenticationForm


def count_of(rows: QuerySet[Any]) -> Coalesce:
    """The number of these rows that belong to the database of each row, as a subquery."""
    counted = (
        rows.filter(database=OuterRef("pk")).order_by().values("database").annotate(n=Count("pk"))
    )
    return Coalesce(Subquery(counted.values("n"), output_field=IntegerField()), 0)


class DatabaseForm(forms.ModelForm[Database]):
    """Take a URL write-only: it is never shown back, and it must answer before it is saved."""

    new_url = forms.CharField(
        label="URL",
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="postgresql://user:password@host:port/database (percent-encode '@', '/', "
        "'?', '#' and ':' in the password). Leave empty to keep the current one. dbsync "
        "connects once before saving.",
    )

    class Meta:
        model = Database
        fields = ["name"]

    def clean_name(self) -> str:
        try:
            return registry.validate_name(self.cleaned_data["name"])
        except SyncError as error:
            raise forms.ValidationError(str(error)) from None

    def clean_new_url(self) -> str:
        url: str = self.cleaned_data.get("new_url", "")
        if not url and self.instance.pk is None:
            raise forms.ValidationError("A new database needs its URL.")
        if url:
            try:
                # The checks of registry.register: the service's own database is refused.
                self.probe = registry.vet(url, check=True)
            except SyncError as error:
                raise forms.ValidationError(str(error)) from None
        return url

    def save(self, commit: bool = True) -> Database:
        if self.cleaned_data.get("new_url"):
            self.instance.url = self.cleaned_data["new_url"]
            self.instance.role_is_superuser = self.probe.superuser if self.probe else None
        return super().save(commit=commit)

    probe: catalog.ServerProbe | None = None


class DatabaseGrantInline(admin.TabularInline[DatabaseGrant, Database]):
    """Who may list the database (members of the group), and read its records."""

    model = DatabaseGrant
    extra = 1
    verbose_name = "grant to a group"
    verbose_name_plural = (
        "grants (staff see every database; others only what their groups are granted)"
    )


@admin.register(Database)
class DatabaseAdmin(admin.ModelAdmin[Database]):
    form = DatabaseForm
    list_display = ["name", "location", "status", "watch_mode", "reflected_at", "schema_count",
                    "table_count", "last_error"]  # fmt: skip
    search_fields = ["name"]
    readonly_fields = ["location", "role_is_superuser", "status", "watch_mode", "watch_error",
                       "created_at", "imported_at", "reflected_at", "last_error", "last_error_at",
                       "history"]  # fmt: skip
    actions = ["import_now", "reflect_now", "install_watch", "uninstall_watch"]
    inlines = [DatabaseGrantInline]

    def save_model(self, request: HttpRequest, obj: Database, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        warning = registry.superuser_warning(obj)
        if warning:
            self.message_user(request, warning, messages.WARNING)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Database]:
        # A subquery per count: one join of schemas and tables would count schemas x tables rows.
        return (
            super()
            .get_queryset(request)
            .annotate(
                live_schemas=count_of(Schema.objects.live()),
                live_tables=count_of(Table.objects.live()),
                runs_recorded=count_of(ReflectionRun.objects.all()),
            )
        )

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        """The changelist, with the state of every database of the page read in one go."""
        changelist = super().get_changelist_instance(request)
        shown = list(changelist.result_list)  # the page's rows, kept by the queryset for display
        for database, now in zip(shown, gate.statuses_of(shown), strict=True):
            database.status_now = now
        return changelist

    @admin.display(description="location")
    def location(self, database: Database) -> str:
        try:
            return database.redacted_url
        except SecretUnreadable as error:
            return str(error)

    @admin.display(description="status")
    def status(self, database: Database) -> str:
        now = getattr(database, "status_now", None) or gate.status_of(database)
        return f"{now.status} (task {now.task_id})" if now.task_id else str(now.status)

    @admin.display(description="watch mode")
    def watch_mode(self, database: Database) -> str:
        return listening.watch_mode(database)

    @admin.display(description="schemas", ordering="live_schemas")
    def schema_count(self, database: Database) -> int:
        return int(getattr(database, "live_schemas", 0))

    @admin.display(description="tables", ordering="live_tables")
    def table_count(self, database: Database) -> int:
        return int(getattr(database, "live_tables", 0))

    @admin.display(description="reflection history")
    def history(self, database: Database) -> str:
        url = reverse("admin:sync_reflectionrun_changelist") + f"?database__id__exact={database.pk}"
        runs = int(getattr(database, "runs_recorded", 0))  # annotated by get_queryset
        return format_html('<a href="{}">{} runs</a>', url, runs)

    @admin.action(description="Import now")
    def import_now(self, request: HttpRequest, queryset: QuerySet[Database]) -> None:
        for database in queryset:
            self.report(request, database, gate.request_import(database), "import")

    @admin.action(description="Reflect now")
    def reflect_now(self, request: HttpRequest, queryset: QuerySet[Database]) -> None:
        for database in queryset:
            queued = gate.request_reflection(database, ReflectionRun.Trigger.ADMIN)
            self.report(request, database, queued, "reflection")

    @admin.action(description="Install the DDL watch")
    def install_watch(self, request: HttpRequest, queryset: QuerySet[Database]) -> None:
        for database in queryset:
            self.change_watch(request, database, watch.install, "watch installed")

    @admin.action(description="Remove the DDL watch")
    def uninstall_watch(self, request: HttpRequest, queryset: QuerySet[Database]) -> None:
        for database in queryset:
            self.change_watch(request, database, watch.uninstall, "watch removed")

    def change_watch(
        self,
        request: HttpRequest,
        database: Database,
        change: Callable[[Database], object],
        done: str,
    ) -> None:
        try:
            change(database)
        except SyncError as error:
            self.message_user(request, str(error), messages.ERROR)
            return
        self.message_user(request, f"{database}: {done}.", messages.SUCCESS)

    def report(
        self, request: HttpRequest, database: Database, freshness: Freshness, what: str
    ) -> None:
        level = messages.INFO
        if freshness.status == Status.UNAVAILABLE:
            level = messages.ERROR
        elif freshness.queued_now:
            level = messages.SUCCESS
        task = f" (task {freshness.task_id})" if freshness.task_id else ""
        self.message_user(request, f"{database}: {gate.describe(freshness, what)}{task}.", level)


ShownT = TypeVar("ShownT", bound=Model)


class ReadOnlyAdmin(admin.ModelAdmin[ShownT]):
    """Reflected state is written by reflection only: the admin shows it."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Schema)
class SchemaAdmin(ReadOnlyAdmin[Schema]):
    list_display = ["name", "database", "oid", "dropped_at"]
    list_filter = ["database", ("dropped_at", admin.EmptyFieldListFilter)]
    search_fields = ["name"]


@admin.register(Table)
class TableAdmin(ReadOnlyAdmin[Table]):
    list_display = ["name", "schema", "database", "kind", "oid", "dropped_at"]
    list_filter = ["database", "kind", ("dropped_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "schema__name"]
    list_select_related = ["schema", "database"]


@admin.register(ReflectionRun)
class ReflectionRunAdmin(ReadOnlyAdmin[ReflectionRun]):
    list_display = ["database", "trigger", "started_at", "finished_at", "outcome", "added",
                    "renamed", "moved", "dropped", "recreated", "unchanged", "targeted",
                    "repeats"]  # fmt: skip
    list_filter = ["database", "outcome", "trigger"]
    date_hierarchy = "started_at"


@admin.register(ChangeEvent)
class ChangeEventAdmin(ReadOnlyAdmin[ChangeEvent]):
    list_display = ["occurred_at", "database", "kind", "object_type", "schema_after", "name_after",
                    "name_before", "role", "application", "command_tag", "xid"]  # fmt: skip
    list_filter = ["database", "kind", "object_type", "time_seen"]
    search_fields = ["name_after", "name_before", "role", "application"]
    list_select_related = ["database"]


class WebhookForm(forms.ModelForm[Webhook]):
    """Take the signing secret write-only, and refuse a URL dbsync must not call."""

    url = forms.URLField(max_length=2000, assume_scheme="https")
    new_secret = forms.CharField(
        label="Secret",
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Signs each delivery (X-Dbsync-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "
        '"<t>.<body>">). Leave empty to keep the current one.',
    )

    class Meta:
        model = Webhook
        fields = ["url", "database", "active"]

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"]
        try:
            webhook_targets.check_url(url)
        except SyncError as error:
            raise forms.ValidationError(str(error)) from None
        return url

    def clean_new_secret(self) -> str:
        secret: str = self.cleaned_data.get("new_secret", "")
        if not secret and self.instance.pk is None:
            raise forms.ValidationError("A new webhook needs its secret.")
        return secret

    def save(self, commit: bool = True) -> Webhook:
        if self.cleaned_data.get("new_secret"):
            self.instance.secret = self.cleaned_data["new_secret"]
        return super().save(commit=commit)


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin[Webhook]):
    form = WebhookForm
    list_display = ["url", "database", "active", "created_at"]
    list_filter = ["active", "database"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin[WebhookDelivery]):
    list_display = ["id", "webhook", "database", "status", "attempts", "last_error", "created_at",
                    "next_attempt_at", "delivered_at"]  # fmt: skip
    list_filter = ["status", "database", "webhook"]
    list_select_related = ["webhook", "database"]
    actions = ["resend"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_staff)  # for the re-send action; every field is read-only

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in WebhookDelivery._meta.fields]

    @admin.action(description="Re-send")
    def resend(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = webhooks.resend(list(queryset.values_list("id", flat=True)))
        queued = deliveries.queue_delivery(None)
        later = "now" if queued else "within half a minute (the task queue did not answer)"
        self.message_user(request, f"{count} deliveries will be sent again {later}.")
