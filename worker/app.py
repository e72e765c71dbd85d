"""The Celery app, configured from Django settings (the CELERY_ names)."""

import os
from typing import Any

from celery import Celery, bootsteps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("dbsync")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["sync"])


class RequireSecrets(bootsteps.Step):
    """Refuse to start a worker without the secrets it needs (DEBUG off), naming them.

    A boot step, not a signal handler: Celery logs and ignores what a signal handler raises.
    """

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        from sync.checks import require_secrets

        require_secrets()
        super().__init__(parent, **kwargs)


app.steps["worker"].add(RequireSecrets)
