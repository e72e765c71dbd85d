"""Flower, as the Procfile starts it, against the test broker and a real worker process."""

import json
import os
import shutil
import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import (
    free_port,
    process_environment,
    start_worker_process,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)


def workers_listed(port: int) -> list[str]:
    url = f"http://127.0.0.1:{port}/api/workers?refresh=1"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return list(json.load(response))
    except OSError:
        return []


def test_flower_starts_and_its_api_lists_the_worker():
    port = free_port()
    env = {**process_environment(), "FLOWER_UNAUTHENTICATED_API": "true"}
    celery = shutil.which("celery", path=os.path.dirname(sys.executable)) or "celery"
    flower = subprocess.Popen(
        [celery, "-A", "worker", "flower", "--address=127.0.0.1", f"--port={port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    worker = start_worker_process(queue="flower-test")
    try:
        wait_until(lambda: workers_listed(port), timeout=60, what="Flower to list the worker")
        assert any(name.startswith("celery@") for name in workers_listed(port))
    finally:
        stop_process(worker)
        stop_process(flower)
