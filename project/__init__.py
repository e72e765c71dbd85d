"""Django project of dbsync: settings, URLs and the WSGI entry point."""

# Load the Celery app with Django, so that @shared_task binds to it in web processes too.
from worker import app as celery_app

__all__ = ["celery_app"]
