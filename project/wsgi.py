"""WSGI entry point of dbsync."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
application = get_wsgi_application()

from sync.checks import require_secrets  # noqa: E402  (after Django is set up)

require_secrets()
