"""Deliver the webhooks' outbox: each transaction's events POSTed as signed JSON, in order.

Deliveries of one webhook and one database go one at a time, oldest first, under an advisory
lock of the service database: a later transaction never overtakes an earlier one. A failed
attempt waits (10 s doubling to 5 min) and holds the ones behind it; after
SYNC_WEBHOOK_MAX_ATTEMPTS it is marked failed, shown in the admin, and the next one goes.
Receivers deduplicate by the events' ids and the delivery id (delivery is at least once).
"""

import hashlib
import hmac
import http.client
import json
import logging
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from sync import metrics
from sync.exceptions import SyncError
from sync.models import ChangeEvent, WebhookDelivery
from sync.ops.webhook_targets import Target, check_url

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Dbsync-Signature"
DELIVERY_HEADER = "X-Dbsync-Delivery"
RETRY_CAP_SECONDS = 300
# Fields of an event a receiver gets: no client address or pid (the API shows those to staff).
EVENT_FIELDS = (
    "id", "kind", "object_type", "oid", "schema_id", "table_id", "name_before", "name_after",
    "schema_before", "schema_after", "occurred_at", "time_seen", "role", "application",
    "command_tag", "xid",
)  # fmt: skip


def backoff(attempts: int) -> timedelta:
    """Return the wait after `attempts` failed attempts: 10 s, 20 s, 40 s, ... up to 5 min
    (from SYNC_WEBHOOK_RETRY_SECONDS)."""
    base = settings.SYNC_WEBHOOK_RETRY_SECONDS
    return timedelta(seconds=min(RETRY_CAP_SECONDS, base * 2 ** (attempts - 1)))


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Return the signature header's value: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">."""
    signed = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def body_of(delivery: WebhookDelivery) -> bytes:
    """Return the JSON body of a delivery: its id, database, transaction and events."""
    rows = ChangeEvent.objects.filter(id__in=delivery.event_ids).order_by("id")
    events = list(rows.values(*EVENT_FIELDS))
    document = {
        "delivery": delivery.id,
        "database": {"id": delivery.database_id, "name": delivery.database.name},
        "xid": events[0]["xid"] if events else None,
        "events": events,
    }
    return json.dumps(document, cls=DjangoJSONEncoder, sort_keys=True).encode()


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP connection to one vetted address, sending the URL's host name (Host, and SNI and
    the certificate's check over TLS)."""

    def __init__(self, target: Target, address: str, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.address = address
        self.tls = ssl.create_default_context() if target.scheme == "https" else None

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host) if self.tls else sock


def post(target: Target, body: bytes, headers: dict[str, str]) -> None:
    """POST the body to the first of the target's addresses that answers; raise OSError or
    HTTPException unless answered with a 2xx. A redirect is a failure: it could lead to an
    address the URL check would refuse."""
    error: OSError | None = None
    for address in target.addresses:
        connection = _PinnedConnection(target, address, settings.SYNC_WEBHOOK_TIMEOUT)
        try:
            # Host given: http.client's own would add :443 to an https URL on its default port.
            sent = {"Host": target.host_header, **headers}
            connection.request("POST", target.path, body=body, headers=sent)
            status = connection.getresponse().status
        except ConnectionRefusedError as refused:  # the next address may answer
            error = refused
            continue
        finally:
            connection.close()
        if not 200 <= status < 300:
            raise OSError(f"answered {status}")
        return
    raise error or OSError("no address to connect to")


def attempt(delivery: WebhookDelivery) -> str:
    """Try one delivery now; record and return its outcome (delivered, retried, failed)."""
    webhook = delivery.webhook
    now = timezone.now()
    try:
        target = check_url(webhook.url)
        body = body_of(delivery)
        stamp = int(time.time())
        post(
            target,
            body,
            {
                "Content-Type": "application/json",
                "User-Agent": "dbsync-webhooks",
                SIGNATURE_HEADER: sign(webhook.secret, stamp, body),
                DELIVERY_HEADER: str(delivery.id),
            },
        )
    except (OSError, http.client.HTTPException, SyncError) as error:
        return _failed(delivery, now, error)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.DELIVERED,
        attempts=delivery.attempts + 1,
        delivered_at=timezone.now(),
        last_error="",
    )
    metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
    metrics.WEBHOOK_LAG.observe((timezone.now() - delivery.created_at).total_seconds())
    return "delivered"


def _failed(delivery: WebhookDelivery, now: datetime, error: Exception) -> str:
    attempts = delivery.attempts + 1
    gave_up = attempts >= settings.SYNC_WEBHOOK_MAX_ATTEMPTS
    outcome = "failed" if gave_up else "retried"
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.FAILED if gave_up else WebhookDelivery.Status.PENDING,
        attempts=attempts,
        last_error=_first_line(error),
        next_attempt_at=now + backoff(attempts),
    )
    metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
    logger.warning("webhook delivery %s attempt %d: %s", delivery.id, attempts, error)
    return outcome


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:500]


@dataclass
class Report:
    """What one pass over the outbox did, and when it should run again (None: nothing due)."""

    outcomes: dict[str, int] = field(default_factory=dict)
    next_due: datetime | None = None

    def add(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def due(self, when: datetime) -> None:
        self.next_due = when if self.next_due is None else min(self.next_due, when)


def deliver_pending(database_id: int | None = None) -> Report:
    """Deliver what is due, for one database or all, each webhook and database in order."""
    report = Report()
    pending = WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.PENDING, webhook__active=True
    )
    if database_id is not None:
        pending = pending.filter(database_id=database_id)
    pairs = pending.order_by().values_list("webhook_id", "database_id").distinct()
    for webhook_id, pair_database_id in list(pairs):
        with _pair_lock(webhook_id, pair_database_id) as held:
            if held:
                _deliver_pair(webhook_id, pair_database_id, report)
    return report


def _deliver_pair(webhook_id: int, database_id: int, report: Report) -> None:
    """Deliver one webhook's pending deliveries of one database, oldest first, until one fails
    or is not due yet."""
    queue = WebhookDelivery.objects.select_related("webhook", "database").filter(
        webhook_id=webhook_id, database_id=database_id, status=WebhookDelivery.Status.PENDING
    )
    for delivery in queue.order_by("id").iterator(chunk_size=50):
        if delivery.next_attempt_at > timezone.now():
            # Not due: the pass that made the failed attempt already queued the next one, so
            # this pass (a reflection's, the beat job's) queues none, and passes never pile up.
            return
        outcome = attempt(delivery)
        report.add(outcome)
        if outcome == "retried":
            report.due(timezone.now() + backoff(delivery.attempts + 1))
            return


class _pair_lock:
    """Hold the advisory lock of one webhook and database for this session, if free."""

    def __init__(self, webhook_id: int, database_id: int) -> None:
        self.key = f"dbsync-webhook:{webhook_id}:{database_id}"
        self.held = False

    def __enter__(self) -> bool:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [self.key])
            self.held = bool(cursor.fetchone()[0])
        return self.held

    def __exit__(self, *_: object) -> None:
        if self.held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [self.key])


def resend(delivery_ids: list[int]) -> int:
    """Make these deliveries pending again, due now; return how many."""
    return WebhookDelivery.objects.filter(pk__in=delivery_ids).update(
        status=WebhookDelivery.Status.PENDING, attempts=0, next_attempt_at=timezone.now()
    )
