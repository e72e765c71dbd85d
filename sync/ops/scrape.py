"""What /metrics serves: the processes' counters, and the figures read at each scrape.

Figures that are a state rather than an event (last success, objects, listener connected,
queue depth, change events waiting) are read from their source when scraped: no process's
stale copy can outlive it.
"""

import contextlib
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, cast

import redis
from amqp.exceptions import ChannelError
from celery import current_app
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Min, Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from sync.changes import listening, ownership, queues, store, turns
from sync.changes.publisher import PUBLISH_ERRORS
from sync.models import Database, EventBatch, Schema, Table

logger = logging.getLogger(__name__)


class ScrapeCollector(Collector):
    """The figures read from the service database and Redis at each scrape."""

    def collect(self) -> Iterator[Metric]:
        try:
            rows = Database.objects.values_list("id", "name", "watch_installed_at")
            databases = {database_id: name for database_id, name, _ in rows}
            watched = {database_id: name for database_id, name, installed in rows if installed}
            yield from database_figures(databases)
        except DatabaseError as error:
            logger.warning("metrics: service database unavailable: %s", error)
            databases, watched = {}, {}
        try:
            yield from state_figures(databases, watched)
        except store.STATE_ERRORS as error:
            logger.warning("metrics: Redis unavailable: %s", error)


def database_figures(names: dict[int, str]) -> Iterator[Metric]:
    success = GaugeMetricFamily(
        "dbsync_last_success_timestamp_seconds",
        "When the last successful reflection of each database ended (Unix time).",
        labels=["database"],
    )
    reflected = Database.objects.exclude(reflected_at=None).values_list("id", "reflected_at")
    for database_id, reflected_at in reflected:
        # Never None, by the exclude, which the stubs cannot see.
        success.add_metric([names[database_id]], cast(datetime, reflected_at).timestamp())
    yield success
    objects = GaugeMetricFamily(
        "dbsync_objects",
        "Live schemas and relations held for each database.",
        labels=["database", "kind"],
    )
    for kind, model in (("schema", Schema), ("relation", Table)):
        for database_id, count in model.objects.live_counts().items():
            objects.add_metric([names.get(database_id, str(database_id)), kind], count)
    yield objects
    yield from waiting_events(names)


def waiting_events(names: dict[int, str]) -> Iterator[Metric]:
    """The events reflections left that the change feed has not recorded yet: a count that
    stays up, or an age that grows, says no worker consumes the webhooks queue."""
    waiting = GaugeMetricFamily(
        "dbsync_change_events_waiting",
        "Change events a reflection described that the change feed has not yet recorded.",
        labels=["database"],
    )
    oldest = GaugeMetricFamily(
        "dbsync_change_events_waiting_oldest_seconds",
        "Age of the oldest change events waiting for the change feed.",
        labels=["database"],
    )
    now = timezone.now()
    batches = EventBatch.objects.order_by().values("database_id")
    for row in batches.annotate(events=Sum("count"), since=Min("recorded_at")):
        name = names.get(row["database_id"], str(row["database_id"]))
        waiting.add_metric([name], row["events"])
        oldest.add_metric([name], (now - row["since"]).total_seconds())
    yield waiting
    yield oldest


def state_figures(names: dict[int, str], watched: dict[int, str]) -> Iterator[Metric]:
    """Yield the figures Redis holds; the listener's of watched databases only (see below)."""
    connected_gauge = GaugeMetricFamily(
        "dbsync_listener_connected",
        "1 while the listener holds a live LISTEN connection to the database, else 0; only "
        "for databases whose watch is installed (the others are polled: nothing to connect).",
        labels=["database"],
    )
    for database_id, connected in zip(watched, listening.listening(watched), strict=True):
        connected_gauge.add_metric([watched[database_id]], int(connected))
    yield connected_gauge
    holders = GaugeMetricFamily(
        "dbsync_listener_databases",
        "Watched databases each live listener holds (host:pid:nonce); 0 for a standby.",
        labels=["listener"],
    )
    for listener, count in ownership.held_counts(list(watched)).items():
        holders.add_metric([listener], count)
    yield holders
    reconnects = CounterMetricFamily(
        "dbsync_listener_reconnects",
        "LISTEN connections lost and opened again by the listener, by database.",
        labels=["database"],
    )
    for database_id, count in listening.reconnects().items():
        if database_id in names:
            reconnects.add_metric([names[database_id]], count)
    yield reconnects
    yield GaugeMetricFamily(
        "dbsync_renewals_in_flight",
        "Reflections the renewal queued that have not ended yet (bounded).",
        value=turns.renewals_in_flight(),
    )
    depth = GaugeMetricFamily(
        "dbsync_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"]
    )
    for queue, waiting in queue_depths(queues.QUEUES):
        depth.add_metric([queue], waiting)
    yield depth


# kombu's Redis transport keeps a queue's messages of priority 0 under its name and the other
# priority steps under name + separator + step.
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def queue_depths(names: Sequence[str]) -> list[tuple[str, int]]:
    """Return the messages waiting in each queue, by the broker's own count."""
    if settings.SYNC_BROKER_KIND == "amqp":
        return amqp_queue_depths(names)
    return redis_queue_depths(names)


def amqp_queue_depths(names: Sequence[str]) -> list[tuple[str, int]]:
    """Ask RabbitMQ each queue's ready messages (a passive declare: no queue is created)."""
    depths = []
    try:
        with current_app.connection_for_read(transport_options={"connect_timeout": 0.5}) as conn:
            for name in names:
                channel: Any = conn.channel()  # py-amqp's, which kombu's stubs do not type
                try:
                    depths.append((name, int(channel.queue_declare(name, passive=True)[1])))
                except ChannelError:  # not declared yet: nothing was ever queued there
                    depths.append((name, 0))
                finally:
                    with contextlib.suppress(*PUBLISH_ERRORS):
                        channel.close()
    except PUBLISH_ERRORS as error:
        logger.warning("metrics: broker unavailable: %s", error)
        return []
    return depths


def redis_queue_depths(names: Sequence[str]) -> list[tuple[str, int]]:
    """Count a queue's messages in kombu's Redis lists, each priority step's included."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=0.5)
    try:
        with broker.pipeline(transaction=False) as pipe:
            for name in names:
                for suffix in PRIORITY_SUFFIXES:
                    pipe.llen(name + suffix)
            lengths = pipe.execute()
    except RedisError as error:
        logger.warning("metrics: broker unavailable: %s", error)
        return []
    finally:
        broker.close()
    step = len(PRIORITY_SUFFIXES)
    return [(name, sum(lengths[i * step : (i + 1) * step])) for i, name in enumerate(names)]


def exposition() -> bytes:
    """Return every metric of this host's processes, in Prometheus's text format."""
    registry = CollectorRegistry()
    # prometheus-client leaves the collector's constructor unannotated.
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(ScrapeCollector())
    return generate_latest(registry)
