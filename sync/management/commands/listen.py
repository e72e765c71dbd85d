"""manage.py listen: the listener process (Procfile role `listener`)."""

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from sync.changes.listener import Listener


class Command(BaseCommand):
    help = (
        "Listen for DDL notices of every database whose watch is installed, and queue a "
        "reflection of each one that changed. Runs until stopped (SIGTERM or Ctrl-C)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        Listener().run(stop)
