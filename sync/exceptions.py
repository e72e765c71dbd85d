"""Errors of dbsync; each carries the HTTP status the API answers it with and a stable code."""


class SyncError(Exception):
    """Base of dbsync's own errors; the message is safe to show (no credentials).

    `code` is the machine-readable error code of the API's error body: never change one.
    """

    http_status = 500
    code = "error"


class InvalidDatabaseURL(SyncError):
    """A database URL or name that dbsync cannot use."""

    http_status = 400
    code = "invalid_database_url"


class BadParameter(SyncError):
    """A query parameter or path id that is malformed, out of bounds, repeated or missing."""

    http_status = 400
    code = "invalid"

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name} {message}")
        self.name, self.message = name, message


class UnknownDatabase(SyncError):
    """No database is registered under that name or id."""

    http_status = 404
    code = "unknown_database"


class IdentityChanged(SyncError):
    """The server or database behind a registered URL is not the one reflected before."""

    http_status = 409
    code = "identity_changed"


class CatalogUnavailable(SyncError):
    """The registered database could not be reached or its catalog could not be read."""

    http_status = 503
    code = "database_unavailable"


class WatchRefused(SyncError):
    """The database refused to install or remove the DDL watch (a privilege, a dependency)."""

    http_status = 409
    code = "watch_refused"


class TableNotFound(SyncError):
    """The relation is gone, or no longer has the name it was asked for by."""

    http_status = 404
    code = "table_not_found"


class InvalidPage(SyncError):
    """A page's limit or offset is out of bounds."""

    http_status = 400
    code = "invalid_page"


class ReadFailed(SyncError):
    """The database answered but could not read the relation (a view's error, a privilege)."""

    http_status = 502
    code = "read_failed"


class ReadTimedOut(ReadFailed):
    """A read ran longer than SYNC_STATEMENT_TIMEOUT and the database cancelled it."""

    http_status = 503
    code = "read_timed_out"


class WriteRefused(ReadFailed):
    """Reading the relation tried to write (a view calling a writing function): refused."""

    http_status = 403
    code = "write_refused"


class NotPopulated(ReadFailed):
    """A materialized view created WITH NO DATA or never refreshed: a state, not an outage."""

    http_status = 409
    code = "not_populated"


class QueueUnavailable(SyncError):
    """The broker did not take the task: nothing was queued."""

    http_status = 503
    code = "queue_unavailable"


class SecretUnreadable(SyncError):
    """A secret stored encrypted that no key of SYNC_SECRET_KEYS decrypts."""

    http_status = 503
    code = "secret_unreadable"


class AccessDenied(SyncError):
    """The user may see the database but not do this with it (read records, say)."""

    http_status = 403
    code = "access_denied"


class ValueNotFound(SyncError):
    """The relation has no such column, or no row at that offset."""

    http_status = 404
    code = "value_not_found"


class UnknownTask(SyncError):
    """No task of that id was queued, or its record expired."""

    http_status = 404
    code = "not_found"


class WebhookRefused(SyncError):
    """A webhook URL dbsync will not call: not http(s), unresolvable, or a private address."""

    http_status = 400
    code = "webhook_refused"
