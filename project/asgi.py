"""ASGI entry point of dbsync: the push role (`uvicorn project.asgi:application`, Procfile).

It serves the same URLs as the web role, but only the push channel's streams are meant for it:
an async view holds each open page's stream without holding a thread.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
application = get_asgi_application()

from sync.checks import require_secrets  # noqa: E402  (after Django is set up)

require_secrets()
