"""Refuse to start without the secrets dbsync needs when DEBUG is off.

Called by the web (wsgi.py) and worker (a boot step) processes and, as a system check, by
management commands; not at import, so that scripts that only read settings still run.
"""

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

HINT = "`make run` generates both into .run/secrets.mk when the environment sets none."


def missing_secrets() -> list[str]:
    """Return the names of the required secret settings that are unset (none with DEBUG on)."""
    if settings.DEBUG:
        return []
    missing = [] if settings.SYNC_SECRET_KEYS else ["SYNC_SECRET_KEYS"]
    try:
        settings.SECRET_KEY  # noqa: B018  (Django refuses to hand out an empty one)
    except ImproperlyConfigured:
        missing.insert(0, "SECRET_KEY")
    return missing


def require_secrets() -> None:
    """Raise ImproperlyConfigured naming each required secret that is unset."""
    missing = missing_secrets()
    if missing:
        raise ImproperlyConfigured(
            f"{' and '.join(missing)} must be set in the environment when DEBUG is off. {HINT}"
        )


@checks.register(checks.Tags.security)
def check_secrets(**_: Any) -> list[checks.CheckMessage]:
    """Stop management commands (migrate, collectstatic, ...) early on a missing secret."""
    return [
        checks.Error(f"{name} is not set and DEBUG is off.", hint=HINT, id="sync.E001")
        for name in missing_secrets()
    ]
