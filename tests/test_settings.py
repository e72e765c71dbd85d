"""Settings from the environment: a malformed value stops the start with a message naming it."""

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SYNC_POLL_INTERVAL", "soon", "SYNC_POLL_INTERVAL must be a whole number"),
        ("SYNC_LEASE_SECONDS", "1", "SYNC_LEASE_SECONDS must be at least 3"),
        ("SYNC_REFLECTION_INTERVAL", "0", "SYNC_REFLECTION_INTERVAL must be at least 1"),
        ("DEBUG", "maybe", "DEBUG must be true or false"),
        ("SYNC_DATABASES", "shop", "SYNC_DATABASES must be comma-separated name="),
        ("REDIS_URL", "http://127.0.0.1:6379/0", "REDIS_URL must start with redis://"),
        ("REDIS_URL", "redis://127.0.0.1:6379/x", "REDIS_URL must end in a database number"),
        ("SYNC_BROKER_URL", "sqs://queue", "SYNC_BROKER_URL must start with redis://"),
        ("SYNC_LISTENER_LEASE_SECONDS", "1", "SYNC_LISTENER_LEASE_SECONDS must be at least 3"),
        ("SYNC_BEAT_LOCK_SECONDS", "x", "SYNC_BEAT_LOCK_SECONDS must be a whole number"),
    ],
    ids=["not-a-number", "below-the-floor", "zero-interval", "not-a-boolean", "no-pair",
         "not-redis", "no-database-number", "not-a-broker", "listener-lease-too-short",
         "beat-lock-not-a-number"],
)  # fmt: skip
def test_a_malformed_setting_stops_the_start_naming_it(variable, value, message):
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", variable: value}
    started = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode != 0
    assert message in started.stderr.strip().splitlines()[-1]


def test_the_defaults_start():
    unset = {"SYNC_POLL_INTERVAL", "SYNC_LEASE_SECONDS", "REDIS_URL"}
    environment = {k: v for k, v in os.environ.items() if k not in unset}
    environment["DJANGO_SETTINGS_MODULE"] = "project.settings"
    code = "import django; django.setup(); from django.conf import settings as s;"
    code += " print(s.SYNC_POLL_INTERVAL, s.SYNC_LEASE_SECONDS, s.SYNC_STATE_REDIS_URL)"
    started = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 0, started.stderr
    assert started.stdout.split()[:2] == ["30", "30"]
    assert started.stdout.split()[2].endswith("/3")  # the state's own Redis database


@pytest.mark.parametrize(
    ("broker", "kind", "option"),
    [
        ("", "redis", "visibility_timeout"),
        ("amqp://u:p@rabbit:5672/dbsync", "amqp", "confirm_publish"),
    ],
    ids=["redis-by-default", "rabbitmq"],
)
def test_the_broker_is_redis_unless_sync_broker_url_names_rabbitmq(broker, kind, option):
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings"}
    environment["SYNC_BROKER_URL"] = broker
    code = "import django; django.setup(); from django.conf import settings as s;"
    code += " print(s.SYNC_BROKER_KIND, sorted(s.CELERY_BROKER_TRANSPORT_OPTIONS), s.CACHES)"
    started = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 0, started.stderr
    assert started.stdout.split()[0] == kind
    assert option in started.stdout
    assert "redis://" in started.stdout  # the cache stays on Redis either way
