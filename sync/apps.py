"""App configuration of sync."""

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def after_migrate(**_: Any) -> None:
    """Install the beat schedule and register the databases named in settings."""
    from sync.reflection import registry
    from worker.schedule import install_schedule

    install_schedule()
    registry.register_configured()


class SyncConfig(AppConfig):
    name = "sync"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Database sync"

    def ready(self) -> None:
        from celery.signals import before_task_publish

        from sync import checks  # noqa: F401  (registers the system checks)
        from sync.changes import pushing
        from sync.changes.progress import note_published
        from sync.reflection.signals import reflected

        before_task_publish.connect(
            note_published, weak=False, dispatch_uid="sync.changes.progress"
        )
        # Open pages hear of each committed reflection (the push channel).
        reflected.connect(pushing.announce, weak=False, dispatch_uid="sync.changes.pushing")

        post_migrate.connect(after_migrate, sender=self)
