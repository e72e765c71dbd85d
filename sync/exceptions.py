"""Errors of dbsync; views map them to HTTP responses, commands to one-line messages."""


class SyncError(Exception):
    """Base of dbsync's own errors; the message is safe to show (no credentials)."""


class InvalidDatabaseURL(SyncError):
    """A database URL that is not a usable postgresql:// URL."""


class CatalogUnavailable(SyncError):
    """The registered database could not be reached or its catalog could not be read."""


class IdentityChanged(SyncError):
    """The server or database behind a registered URL is not the one reflected before."""


class UnknownDatabase(SyncError):
    """No database is registered under that name or id."""
