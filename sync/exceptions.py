"""Errors of dbsync; each carries the HTTP status the API answers it with."""


class SyncError(Exception):
    """Base of dbsync's own errors; the message is safe to show (no credentials)."""

    http_status = 500


class InvalidDatabaseURL(SyncError):
    """A database URL or name that dbsync cannot use."""

    http_status = 400


class UnknownDatabase(SyncError):
    """No database is registered under that name or id."""

    http_status = 404


class IdentityChanged(SyncError):
    """The server or database behind a registered URL is not the one reflected before."""

    http_status = 409


class CatalogUnavailable(SyncError):
    """The registered database could not be reached or its catalog could not be read."""

    http_status = 503
