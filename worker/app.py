"""The Celery app, configured from Django settings (the CELERY_ names)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from sync.checks import require_secrets

# Worker, beat and Flower refuse to start without the secrets (DEBUG off): say which.
require_secrets()

app = Celery("dbsync")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["sync"])
