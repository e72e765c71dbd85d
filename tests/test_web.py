"""The web process as the Procfile runs it: slow reads do not starve /healthz; no CDN."""

import json
import threading
import time
import urllib.request

import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token

from sync.models import Table
from sync.reflection import runs
from tests.helpers import (
    admin_connection,
    free_port,
    make_user,
    one_row,
    process_environment,
    start_procfile_role,
    stop_process,
    wait_until,
)

SLOW_READS = 8
SLEEP_SECONDS = 3


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> int:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def sleeping_reads(dbname: str) -> int:
    connection = admin_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND application_name = 'dbsync' AND query LIKE '%%slow%%'"
                " AND state = 'active'",
                [dbname],
            )
            return int(one_row(cursor)[0])
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_healthz_answers_while_eight_slow_records_reads_run(registered, user_db):
    user_db.execute(f"CREATE VIEW slow AS SELECT pg_sleep({SLEEP_SECONDS})::text AS nap")
    runs.reflect(registered.id)
    table = Table.objects.get(name="slow")
    token = Token.objects.create(user=make_user("reader")).key
    port = free_port()
    web = start_procfile_role("web", {**process_environment(), "SYNC_WEB_PORT": str(port)})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: get(f"{base}/healthz") == 200, timeout=60, what="gunicorn")
        records = f"{base}/api/v1/tables/{table.id}/records/"
        reads = [
            threading.Thread(target=get, args=(records, {"Authorization": f"Token {token}"}))
            for _ in range(SLOW_READS)
        ]
        for read in reads:
            read.start()
        # However gunicorn spread them, a process's whole bound of connections to the server
        # is asleep; where one process took all eight, four more of its threads wait for one.
        bound = settings.SYNC_CONNECTIONS_PER_SERVER
        wait_until(lambda: sleeping_reads(user_db.name) >= bound, timeout=30, what="slow reads")

        started = time.monotonic()
        status = get(f"{base}/healthz", timeout=SLEEP_SECONDS * 4)
        elapsed = time.monotonic() - started
        still_reading = sum(read.is_alive() for read in reads)
        for read in reads:
            read.join(timeout=60)
    finally:
        stop_process(web)

    print(f"healthz beside {SLOW_READS} slow reads: {elapsed * 1000:.0f} ms")
    assert status == 200
    assert still_reading == SLOW_READS  # it did not wait for a slow read to end
    assert elapsed < SLEEP_SECONDS / 2


@pytest.mark.django_db(transaction=True)
def test_a_request_line_too_long_for_gunicorn_is_answered_in_the_api_error_shape():
    port = free_port()
    web = start_procfile_role("web", {**process_environment(), "SYNC_WEB_PORT": str(port)})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: get(f"{base}/healthz") in (200, 503), timeout=60, what="gunicorn")
        request = urllib.request.Request(f"{base}/api/v1/tables/?search=" + "x" * 5000)  # noqa: S310
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)  # noqa: S310
    finally:
        stop_process(web)

    assert refused.value.code == 400
    assert refused.value.headers["Content-Type"] == "application/json"
    body = json.loads(refused.value.read())
    assert body["code"] == "invalid"
    assert "Request Line is too large" in body["detail"]


@pytest.mark.django_db
def test_swagger_ui_is_served_from_the_project_not_a_cdn(reader):
    page = reader.get("/api/docs/").content.decode()

    assert "cdn.jsdelivr" not in page
    assert "unpkg" not in page
    bundle = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    assert bundle in page
    assert reader.get(bundle).status_code == 200
