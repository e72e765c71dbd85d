"""Settings for the test suite: the same services, other Redis databases than a running dbsync."""

import os
import tempfile
from urllib.parse import urlsplit

# Fixed test secrets, unless the environment names its own; processes a test starts (workers,
# Flower, gunicorn) inherit them through this module.
os.environ.setdefault("SECRET_KEY", "dbsync-test-secret-key")
os.environ.setdefault("SYNC_SECRET_KEYS", "dGVzdC1rZXktb2YtZGJzeW5jLTAwMDAwMDAwMDAwMDA=")

from project.settings import *  # noqa: F403
from project.settings import REDIS_URL, _broker_options, _redis_url

# The broker: Redis' database 8; with DBSYNC_TEST_BROKER=amqp (`make test` runs the tests of the
# gate, tasks, worker and faults so too), a RabbitMQ virtual host of this checkout's own, named
# for its Redis port, so that two checkouts on one machine never share a queue. ASIDE: a broker
# no worker reads, for the tests that look at what was published (scripts/ensure_services.py
# creates both virtual hosts).
if os.environ.get("DBSYNC_TEST_BROKER", "redis") == "amqp":
    _amqp = os.environ.get("DBSYNC_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672").rstrip("/")
    _vhost = f"dbsync-test-{urlsplit(REDIS_URL).port or 6379}"
    CELERY_BROKER_URL, ASIDE_BROKER_URL = f"{_amqp}/{_vhost}", f"{_amqp}/{_vhost}-aside"
    SYNC_BROKER_KIND = "amqp"
else:
    CELERY_BROKER_URL, ASIDE_BROKER_URL = _redis_url(REDIS_URL, 8), _redis_url(REDIS_URL, 12)
    SYNC_BROKER_KIND = "redis"
CELERY_BROKER_TRANSPORT_OPTIONS = _broker_options(SYNC_BROKER_KIND)
CELERY_RESULT_BACKEND = _redis_url(REDIS_URL, 9)
CACHES["default"] |= {"LOCATION": _redis_url(REDIS_URL, 10), "KEY_PREFIX": "dbsync-test"}  # noqa: F405
SYNC_STATE_REDIS_URL = _redis_url(REDIS_URL, 11)
# A worker killed mid-run is forgotten within seconds, so that tests of it stay short.
SYNC_LEASE_SECONDS = 3
SYNC_LISTEN_HEARTBEAT = 2
# Tests expire the recency key right after a reflection and expect the next list to queue one.
SYNC_MIN_REFLECTION_GAP = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The test worker runs in a thread of the test process: no connection may outlive a task.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
# Serve static files from the apps, as in development: tests run no collectstatic.
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
# Metrics of one test run in a directory of its own, shared with the worker processes it starts.
PROMETHEUS_MULTIPROC_DIR = os.environ.get("DBSYNC_TEST_METRICS_DIR") or tempfile.mkdtemp(
    prefix="dbsync-metrics-"
)
os.environ["DBSYNC_TEST_METRICS_DIR"] = os.environ["PROMETHEUS_MULTIPROC_DIR"] = (
    PROMETHEUS_MULTIPROC_DIR
)
# The tests' webhook receiver listens on the loopback address.
SYNC_WEBHOOK_ALLOW_PRIVATE = True
# Retries of a failing receiver after 1 s, 2 s, ... so that tests of them stay short.
SYNC_WEBHOOK_RETRY_SECONDS = 1
# Pages poll unless a test starts a push role and points them at it
# (tests/browser/test_push_browser.py).
SYNC_PUSH_URL = "off"
