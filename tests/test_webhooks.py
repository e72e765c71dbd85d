"""Webhooks: each transaction's events POSTed signed, in order, at least once, to a real receiver;
failures retried with back-off and shown; private addresses refused."""

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from sync.admin import WebhookForm
from sync.changes import deliveries
from sync.exceptions import WebhookRefused
from sync.models import Database, Webhook, WebhookDelivery
from sync.ops import webhooks
from sync.ops.webhook_targets import check_url
from sync.reflection import feed, runs
from tests.helpers import ScratchDatabase, reflect_recorded, wait_until

SECRET = "receiver-shared-secret"


@dataclass
class Receiver:
    """A real HTTP receiver on the loopback address that fails its first `failures` requests."""

    url: str
    failures: int = 0
    answered: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def accepted(self) -> list[dict[str, Any]]:
        return [json.loads(body) for status, _, body in self.answered if status == 200]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.paths.append(self.path)
            with lock:
                status = 500 if state.failures > 0 else 200
                state.failures -= 1
                state.answered.append((status, dict(self.headers), body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def imported(registered: Database, user_db: ScratchDatabase) -> Database:
    user_db.execute("CREATE TABLE first (id int)")
    reflect_recorded(registered.id)
    return registered


def subscribe(url: str, database: Database | None = None) -> Webhook:
    webhook = Webhook(url=url, database=database)
    webhook.secret = SECRET
    webhook.save()
    return webhook


def signed_correctly(headers: dict[str, str], body: bytes) -> bool:
    parts = dict(item.split("=", 1) for item in headers[webhooks.SIGNATURE_HEADER].split(","))
    expected = hmac.new(SECRET.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts["v1"])


@pytest.mark.django_db(transaction=True)
def test_a_receiver_that_fails_twice_gets_each_event_once_signed_and_in_order(
    worker, imported, user_db, receiver
):
    subscribe(receiver.url, imported)
    receiver.failures = 2
    for name in ("one", "two", "three"):
        user_db.execute(f"CREATE TABLE {name} (id int)")
        assert runs.reflect(imported.id).events == 1
    deliveries.queue_delivery(imported.id)  # the worker records the events, then delivers
    wait_until(lambda: len(receiver.accepted()) == 3, timeout=60, what="three deliveries")
    statuses = [status for status, _, _ in receiver.answered]
    assert statuses == [500, 500, 200, 200, 200]
    accepted = receiver.accepted()
    assert [body["events"][0]["name_after"] for body in accepted] == ["one", "two", "three"]
    event_ids = [event["id"] for body in accepted for event in body["events"]]
    assert event_ids == sorted(set(event_ids))
    for _status, headers, body in receiver.answered:
        assert signed_correctly(headers, body)
        assert headers[webhooks.DELIVERY_HEADER] == str(json.loads(body)["delivery"])
    first = WebhookDelivery.objects.order_by("id").first()
    assert first is not None
    assert first.status == "delivered"
    assert first.attempts == 3


@pytest.mark.django_db
def test_a_delivery_that_keeps_failing_is_marked_failed_with_its_error_and_can_be_resent(
    imported, user_db, receiver, settings
):
    settings.SYNC_WEBHOOK_MAX_ATTEMPTS = 1
    subscribe(receiver.url, imported)
    receiver.failures = 1
    user_db.execute("CREATE TABLE fails (id int)")
    reflect_recorded(imported.id)
    assert webhooks.deliver_pending(imported.id).outcomes == {"failed": 1}
    failed = WebhookDelivery.objects.get()
    assert failed.status == "failed"
    assert "500" in failed.last_error
    assert webhooks.resend([failed.id]) == 1
    assert webhooks.deliver_pending(imported.id).outcomes == {"delivered": 1}
    assert [body["events"][0]["name_after"] for body in receiver.accepted()] == ["fails"]


@pytest.mark.django_db
def test_a_failed_attempt_holds_the_later_transactions_back(imported, user_db, receiver):
    subscribe(receiver.url, imported)
    receiver.failures = 1
    for name in ("early", "late"):
        user_db.execute(f"CREATE TABLE {name} (id int)")
        reflect_recorded(imported.id)
    report = webhooks.deliver_pending(imported.id)
    assert report.outcomes == {"retried": 1}
    assert report.next_due is not None
    assert len(receiver.answered) == 1  # "late" waits behind "early"
    again = webhooks.deliver_pending(imported.id)  # the beat job's pass, before the retry is due
    assert again.outcomes == {}
    assert again.next_due is None  # the failed attempt's pass queued the retry: no second one


@pytest.mark.django_db
def test_a_webhook_of_all_databases_and_one_of_another_database(imported, user_db, receiver):
    everywhere = subscribe(receiver.url)
    elsewhere = subscribe(receiver.url, Database.objects.create(name="elsewhere"))
    user_db.execute("CREATE TABLE seen (id int)")
    reflect_recorded(imported.id)
    owed = set(WebhookDelivery.objects.values_list("webhook_id", flat=True))
    assert owed == {everywhere.id}
    assert elsewhere.id not in owed


@pytest.mark.django_db
def test_no_webhook_no_delivery(imported, user_db):
    user_db.execute("CREATE TABLE alone (id int)")
    assert runs.reflect(imported.id).events == 1
    assert feed.record(imported.id).deliveries == 0
    assert not WebhookDelivery.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://127.0.0.1/hook", id="loopback"),
        pytest.param("http://localhost:8000/hook", id="localhost"),
        pytest.param("http://10.1.2.3/hook", id="private-10"),
        pytest.param("http://192.168.0.10/hook", id="private-192"),
        pytest.param("http://169.254.169.254/latest/meta-data", id="link-local"),
        pytest.param("http://[::1]/hook", id="ipv6-loopback"),
        pytest.param("http://[fe80::1]/hook", id="ipv6-link-local"),
        pytest.param("http://0.0.0.0/hook", id="unspecified"),
    ],
)
@override_settings(SYNC_WEBHOOK_ALLOW_PRIVATE=False)
def test_a_url_resolving_to_a_private_address_is_refused(url):
    with pytest.raises(WebhookRefused, match="SYNC_WEBHOOK_ALLOW_PRIVATE"):
        check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("ftp://example.org/", id="not-http"),
        pytest.param("http:///nohost", id="no-host"),
        pytest.param("http://user:pw@192.0.2.1/", id="credentials"),
    ],
)
def test_a_url_dbsync_cannot_call_is_refused(url):
    with pytest.raises(WebhookRefused):
        check_url(url)


@override_settings(SYNC_WEBHOOK_ALLOW_PRIVATE=False)
def test_a_public_address_is_allowed():
    check_url("https://93.184.215.14/hook")


@override_settings(SYNC_WEBHOOK_ALLOW_PRIVATE=False)
@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://93.184.215.14/hook", "93.184.215.14"),
        ("http://93.184.215.14:80/hook", "93.184.215.14"),
        ("https://93.184.215.14:8443/hook", "93.184.215.14:8443"),
        (
            "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/hook",
            "[2606:2800:21f:cb07:6820:80da:af6b:8b2c]",
        ),
    ],
)
def test_a_delivery_names_the_host_as_a_browser_would(url, host):
    assert check_url(url).host_header == host


@pytest.mark.django_db
@override_settings(SYNC_WEBHOOK_ALLOW_PRIVATE=False)
def test_the_admin_form_refuses_a_private_url():
    form = WebhookForm(data={"url": "http://10.0.0.5/hook", "new_secret": "s", "active": True})
    assert not form.is_valid()
    assert "private" in form.errors["url"][0]


@pytest.mark.django_db
def test_a_url_repointed_at_a_private_address_is_refused_at_delivery(
    imported, user_db, receiver, settings
):
    subscribe(receiver.url, imported)
    user_db.execute("CREATE TABLE guarded (id int)")
    reflect_recorded(imported.id)
    settings.SYNC_WEBHOOK_ALLOW_PRIVATE = False
    assert webhooks.deliver_pending(imported.id).outcomes == {"retried": 1}
    assert receiver.answered == []
    assert "private" in WebhookDelivery.objects.get().last_error


@pytest.mark.django_db
def test_a_delivery_connects_to_the_address_checked_and_never_resolves_the_name_again(
    imported, user_db, receiver, monkeypatch
):
    port = receiver.url.split(":")[2].split("/")[0]
    subscribe(f"http://localhost:{port}/hook?from=dbsync", imported)
    user_db.execute("CREATE TABLE pinned (id int)")
    reflect_recorded(imported.id)
    resolve = socket.getaddrinfo
    looked_up: list[str] = []

    def rebinding(host: str, *args: Any, **kwargs: Any) -> Any:
        # The check's answer is the loopback receiver; any later lookup of the name (where a
        # rebinding server would answer another address) fails the delivery instead.
        looked_up.append(host)
        if looked_up.count("localhost") > 1:
            raise OSError("the name was resolved twice")
        return [entry for entry in resolve(host, *args, **kwargs) if entry[0] == socket.AF_INET]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)

    assert webhooks.deliver_pending(imported.id).outcomes == {"delivered": 1}
    assert looked_up == ["localhost", "127.0.0.1"]  # the name once, then the address checked
    ((_, headers, _),) = receiver.answered
    assert headers["Host"] == f"localhost:{port}"  # the name, for a receiver's virtual host
    assert receiver.paths == ["/hook?from=dbsync"]


@pytest.mark.django_db
def test_events_by_kind_deliveries_by_outcome_and_the_lag_reach_metrics(
    imported, user_db, receiver, staff, django_capture_on_commit_callbacks
):
    subscribe(receiver.url, imported)
    user_db.execute("CREATE TABLE measured (id int); DROP TABLE first")
    with django_capture_on_commit_callbacks(execute=True):
        reflect_recorded(imported.id)
    webhooks.deliver_pending(imported.id)
    text = staff.get("/metrics").content.decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("dbsync_change_events_total", (("kind", "created"),))] >= 1
    assert samples[("dbsync_change_events_total", (("kind", "dropped"),))] >= 1
    assert samples[("dbsync_webhook_deliveries_total", (("outcome", "delivered"),))] >= 1
    assert samples[("dbsync_webhook_delivery_lag_seconds_count", ())] >= 1
