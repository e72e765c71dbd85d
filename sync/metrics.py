"""Prometheus metrics that dbsync's processes count (a leaf: the gate and the tasks import it).

They live in prometheus-client's multiprocess files (PROMETHEUS_MULTIPROC_DIR, set in
project.settings), so one scrape of a web process sums every gunicorn and Celery process of
its host (see sync.ops.scrape).
"""

from django.conf import settings
from prometheus_client import Counter, Histogram, values

# The `celery` command imports prometheus-client (Flower's command plug-in does) before the
# settings name the directory, so the client chose its in-memory values then and a worker's
# figures never reached /metrics: choose again, now that the directory is set, before any
# metric exists. Only then: a second multiprocess class would open the same files twice.
if settings.PROMETHEUS_MULTIPROC_DIR and values.ValueClass is values.MutexValue:
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]

SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

REFLECTION_SECONDS = Histogram(
    "dbsync_reflection_duration_seconds",
    "Time a successful reflection took, from its start to its commit, by trigger.",
    ["trigger"],
    buckets=SECONDS,
)
REFLECTIONS = Counter(
    "dbsync_reflections", "Reflections that ended, by trigger and outcome.", ["trigger", "outcome"]
)
DDL_TO_VISIBLE = Histogram(
    "dbsync_ddl_to_visible_seconds",
    "Time from dbsync hearing of a change (a listener notice, a poll, an on-the-fly read) to the "
    "reflection that shows it, by trigger.",
    ["trigger"],
    buckets=SECONDS,
)
LOG_DRIFT = Counter(
    "dbsync_change_log_drift",
    "Objects a full renewal found changed that the watch's change log had not named: changes the "
    "targeted reflections missed (expected to stay 0).",
)
GATE_DECISIONS = Counter(
    "dbsync_gate_decisions",
    "Answers of the freshness gate: fresh, queued, deduplicated (one in flight), backing_off, "
    "unavailable (Redis or the broker down), by trigger.",
    ["decision", "trigger"],
)
CHANGE_EVENTS = Counter(
    "dbsync_change_events", "Change events recorded by the change feed, by kind.", ["kind"]
)
WEBHOOK_DELIVERIES = Counter(
    "dbsync_webhook_deliveries",
    "Attempts to deliver a transaction's events to a webhook, by outcome: delivered, retried "
    "(failed, to be tried again), failed (given up), refused (a private address).",
    ["outcome"],
)
WEBHOOK_LAG = Histogram(
    "dbsync_webhook_delivery_lag_seconds",
    "Time from the reflection that saw a transaction's events to their delivery to a webhook.",
    buckets=SECONDS,
)
