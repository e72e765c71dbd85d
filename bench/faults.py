"""Benchmark recovery from faults injected into a running service under light list traffic.

Runs every Procfile role under scripts/supervise.py (as `make run` does), on free ports, with a
Redis server of its own, and lists a registered database five times a second throughout. For
each fault it prints the seconds from the fault's end until a list says `fresh` again, the
5xx answers and failed requests meanwhile, the model rows lost, and the list latency during the
fault beside the baseline measured before any fault. The service's PostgreSQL is shared on this
machine, so its restart is stood in for by ending every session of the service database.

A second listener and a second beat run beside the Procfile's (standbys): the faults that kill
the listener holding the database while a client makes DDL, and the beat holding the lock, time
the takeover. Last, the roles start again on a RabbitMQ node of the bench's own as the broker,
and that node is restarted (the machine's own RabbitMQ is shared: it is never touched).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

# Before Django is set up. The bench starts, stops and freezes its Redis server itself (the
# faults), on this port, rather than the one isolate() would start.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.isolate import free_port, isolate

REDIS_PORT = int(os.environ.get("BENCH_REDIS_PORT", "0")) or free_port()
os.environ["REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}/0"
os.environ["SYNC_MIN_REFLECTION_GAP"] = "0"  # an expired key queues at once: recovery shows
isolate("dbsync_bench_faults")

import http.client
import json
import signal
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import Any

import psutil
import redis
from django.conf import settings
from django.core.management import call_command
from django.db import connection as db_connection
from psycopg2 import sql

from bench.common import (
    connect,
    ensure_database,
    log,
    machine,
    server_url,
    stop,
)
from bench.list_latency import auth_header, grant_bench_reader
from bench.rabbit import RabbitNode
from sync.changes import gate, ownership, recency, watch
from sync.exceptions import IdentityChanged
from sync.models import (
    Database,
    ReflectionRun,
    Table,
)
from sync.reflection import registry
from sync.reflection.runs import reflect
from worker import beat

USER_DATABASE = "dbsync_bench_faults_user"  # kept between runs
MARKER = "dbsync bench: faults"
TABLES = 20
OUTAGE_SECONDS = 5.0
RECOVERY_LIMIT = 60.0  # a fault not recovered by then is reported as not recovered
TARGET_SECONDS = 30


@dataclass
class Sample:
    at: float
    status: int  # 0: no answer (refused, reset, timed out)
    freshness: str
    seconds: float


class Traffic:
    """Lists the database five times a second, in a thread, keeping every answer."""

    def __init__(self, port: int, database_id: int, authorization: str) -> None:
        self.port, self.path = port, f"/api/v1/tables/?database={database_id}"
        self.headers = {"Authorization": authorization}
        self.samples: list[Sample] = []
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while self.running:
            started = time.monotonic()
            status, state = 0, ""
            try:
                web = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                web.request("GET", self.path, headers=self.headers)
                response = web.getresponse()
                response.read()
                status, state = response.status, response.getheader("X-Reflection-Status", "")
                web.close()
            except OSError:
                pass
            self.samples.append(Sample(started, status, state, time.monotonic() - started))
            time.sleep(max(0.0, 0.2 - (time.monotonic() - started)))

    def between(self, start: float, end: float) -> list[Sample]:
        return [sample for sample in self.samples if start <= sample.at < end]

    def stop(self) -> None:
        self.running = False
        self.thread.join(timeout=15)


class Service:
    """The Procfile's roles under supervise.py, on free ports, and the Redis server."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.web_port = free_port()
        procfile = (ROOT / "Procfile").read_text()
        os.environ["SYNC_WEB_PORT"] = str(self.web_port)  # the Procfile's web role reads it
        # The standbys: any number of listeners share the databases, two beats take turns.
        procfile += "listener-standby: python manage.py listen\n"
        procfile += "beat-standby: celery -A worker beat --loglevel INFO\n"
        (workdir / "Procfile").write_text(procfile)
        os.environ["FLOWER_PORT"] = str(free_port())
        os.environ.setdefault("FLOWER_BASIC_AUTH", "bench:bench-faults")  # flower refuses none
        self.redis = self.start_redis()

    def start_roles(self) -> None:
        workdir = self.workdir
        self.supervisor = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "supervise.py"),
             "--procfile", str(workdir / "Procfile"), "--run-dir", str(workdir / "run")],
            cwd=ROOT, stdout=(workdir / "roles.log").open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def stop_roles(self) -> None:
        """Stop every role; wait until the web's and Flower's ports are free again: the next
        start refuses to run on a port in use."""
        self.stop_supervisor()
        for port in (self.web_port, int(os.environ["FLOWER_PORT"])):
            poll_until(partial(port_free, port), f"port {port} to be free", 60)

    def stop_supervisor(self) -> None:
        """Stop supervisord and its roles; kill the process group of any role that outlived it
        (a worker still reconnecting to a broker that is gone was seen to)."""
        roles = (self.workdir / "Procfile").read_text().splitlines()  # the standbys' included
        groups = set()
        for pid in filter(None, (self.pid(line.split(":", 1)[0]) for line in roles if ":" in line)):
            with suppress(OSError):
                groups.add(os.getpgid(pid))
        stop(self.supervisor, "supervisord", term_wait=30)
        for process in psutil.process_iter(["cmdline"]):
            # Only a process of this checkout: a group freed meanwhile may be another's now.
            with suppress(psutil.Error, OSError):
                if os.getpgid(process.pid) in groups and str(ROOT) in " ".join(
                    process.info["cmdline"] or []
                ):
                    os.killpg(os.getpgid(process.pid), signal.SIGKILL)

    def start_redis(self) -> subprocess.Popen[bytes]:
        server = shutil.which("redis-server") or "redis-server"
        process = subprocess.Popen(
            [server, "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        poll_until(lambda: redis_answers(), "Redis to start")
        return process

    def pid(self, role: str) -> int:
        out = subprocess.run(
            [str(Path(sys.executable).with_name("supervisorctl")), "-c",
             str(self.workdir / "run" / "supervisord.conf"), "pid", role],
            capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
        return int(out) if out.isdigit() and out != "0" else 0

    def restarted(self, role: str, before: int) -> float:
        """Return the seconds until supervisord runs the role again under a new pid."""
        seconds = poll_until(lambda: self.pid(role) not in (0, before), f"{role} to restart")
        return round(seconds, 2)

    def close(self) -> None:
        if hasattr(self, "supervisor"):
            # Longer than supervisord's stopwaitsecs (20 s): killed before it has stopped every
            # role, it would leave them running, each in a process group of its own.
            self.stop_supervisor()
        subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "shutdown", "nosave"],
                       capture_output=True, check=False)  # fmt: skip
        stop(self.redis, "redis-server")


def port_free(port: int) -> bool:
    """Whether no socket holds the port (as supervise.py checks it: TIME_WAIT is free)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def redis_answers() -> bool:
    try:
        return bool(redis.Redis(port=REDIS_PORT, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def poll_until(ready: Callable[[], object], what: str, seconds: float = 90) -> float:
    """Poll until ready; return the seconds it took. Raise after `seconds`."""
    start = time.monotonic()
    while not ready():
        if time.monotonic() - start > seconds:
            raise RuntimeError(f"{what}: not within {seconds:.0f} s")
        time.sleep(0.1)
    return time.monotonic() - start


def prepare() -> int:
    """Migrate the bench service database, register the user database, reflect it once."""
    ensure_database(settings.DATABASES["default"]["NAME"])
    ensure_database(USER_DATABASE, MARKER)
    call_command("migrate", interactive=False, verbosity=0)
    pg = connect(USER_DATABASE)
    with pg.cursor() as cursor:
        for number in range(TABLES):
            table = sql.Identifier(f"t{number:02d}")
            cursor.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (id int)").format(table))
    pg.close()
    database, _ = registry.register("bench_faults", server_url(USER_DATABASE))
    grant_bench_reader(database)
    try:
        reflect(database.id)
    except IdentityChanged:
        reflect(database.id, accept_new_identity=True)
    watch.install(database)  # the listener's faults: changes heard, not polled
    return database.id


def end_sessions(dbname: str, application_name: str | None = None) -> int:
    """End every session on a database but the bench's, as a server restart would."""
    admin = connect("postgres")
    try:
        with admin.cursor() as cursor:
            extra = "" if application_name is None else " AND application_name = %s"
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s"
                f" AND application_name NOT LIKE 'dbsync-bench%%'{extra}",
                [dbname] + ([application_name] if application_name else []),
            )
            (ended,) = cursor.fetchone() or (0,)
    finally:
        admin.close()
    db_connection.close()  # this script's own session was one of them
    return int(ended)


def expire(database_id: int) -> None:
    """Expire the recency key: a list queues a reflection, which the worker must run."""
    with suppress(redis.RedisError):
        recency.expire(database_id)


def first_fresh(traffic: Traffic, since: float) -> float | None:
    """Return when a list first answered `fresh` after `since`, or None."""
    fresh = [
        s.at for s in traffic.between(since, 1e18) if s.status == 200 and s.freshness == "fresh"
    ]
    return min(fresh) if fresh else None


@contextmanager
def fault(
    name: str, traffic: Traffic, database_id: int, report: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """Measure one fault: the block injects it and returns once it is lifted."""
    rows_before = Table.objects.live().filter(database_id=database_id).count()
    started = time.monotonic()
    facts: dict[str, Any] = {}
    log(f"fault: {name}")
    yield facts
    lifted = time.monotonic()
    with suppress(RuntimeError):  # not recovered within RECOVERY_LIMIT: reported as None
        poll_until(lambda: first_fresh(traffic, lifted) is not None, name, RECOVERY_LIMIT)
    fresh = first_fresh(traffic, lifted)
    fresh_at = time.monotonic() if fresh is None else fresh
    recovered = None if fresh is None else round(fresh - lifted, 2)
    window = traffic.between(started, fresh_at)
    during = [s.seconds * 1000 for s in traffic.between(started, lifted) if s.status == 200]
    report[name] = {
        **facts,
        "fault_seconds": round(lifted - started, 2),
        "fresh_again_after_s": recovered,
        "requests": len(window),
        "answers_5xx": sum(1 for s in window if s.status >= 500),
        "no_answer": sum(1 for s in window if s.status == 0),
        "statuses_seen": sorted({s.freshness or str(s.status) for s in window}),
        "list_p50_ms_during_fault": round(statistics.median(during), 1) if during else None,
        "lost_rows": rows_before - Table.objects.live().filter(database_id=database_id).count(),
    }
    log(f"  {report[name]}")
    time.sleep(2)  # let the service settle before the next fault


def run_faults(service: Service, traffic: Traffic, database_id: int) -> dict[str, Any]:
    report: dict[str, Any] = {}
    broker = redis.Redis(port=REDIS_PORT, db=0)

    with fault(
        "redis_stopped_while_worker_holds_a_delayed_message", traffic, database_id, report
    ) as facts:
        broken, _ = registry.register("bench_faults_broken", "postgresql://nobody@127.0.0.1:1/none")
        gate.request_reflection(
            broken, ReflectionRun.Trigger.API
        )  # fails, and is retried after a countdown
        poll_until(lambda: broker.exists("unacked"), "the worker to hold the retry")
        worker = service.pid("worker")
        subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "shutdown", "nosave"], check=True)
        time.sleep(OUTAGE_SECONDS)
        service.redis = service.start_redis()
        facts["worker_survived"] = service.pid("worker") == worker
        Database.objects.filter(pk=broken.pk).delete()

    with fault("redis_hangs", traffic, database_id, report):
        expire(database_id)
        service.redis.send_signal(signal.SIGSTOP)
        time.sleep(OUTAGE_SECONDS)
        service.redis.send_signal(signal.SIGCONT)

    with fault(
        "listener_holding_the_database_killed_during_ddl", traffic, database_id, report
    ) as facts:
        facts |= listener_takeover(service, database_id)

    with fault("active_beat_killed", traffic, database_id, report) as facts:
        facts |= beat_takeover(service)

    for role in ("worker", "web"):
        with fault(f"{role}_killed", traffic, database_id, report) as facts:
            before = service.pid(role)
            os.killpg(before, signal.SIGKILL)
            expire(database_id)
            facts["restarted_after_s"] = service.restarted(role, before)

    with fault("service_database_restarted", traffic, database_id, report) as facts:
        facts["sessions_ended"] = end_sessions(settings.DATABASES["default"]["NAME"])
        expire(database_id)

    with fault("registered_database_restarted", traffic, database_id, report) as facts:
        facts["sessions_ended"] = end_sessions(USER_DATABASE)
        expire(database_id)
    return report


def role_of(service: Service, pid: int, roles: tuple[str, ...]) -> str:
    """Return which of the roles runs the process (the role's pid may be its shell's)."""
    for role in roles:
        role_pid = service.pid(role)
        if role_pid == pid or (role_pid and pid in children(role_pid)):
            return role
    return "?"


def children(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def listener_takeover(service: Service, database_id: int) -> dict[str, Any]:
    """Kill -9 the listener holding the database while a client makes DDL twice a second for
    15 s; time each change until it is visible; count those never seen."""
    owner = ownership.owners([database_id])[database_id] or "?:0:?"
    pid = int(owner.split(":")[-2])
    holder = role_of(service, pid, ("listener", "listener-standby"))
    ddl = connect(USER_DATABASE, name="dbsync-bench-faults-ddl")
    made: dict[str, float] = {}
    seen: dict[str, float] = {}
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    try:
        while time.monotonic() - killed < RECOVERY_LIMIT:
            now = time.monotonic()
            if now - killed < 15 and now - max(made.values(), default=0) >= 0.5:
                name = f"fault_listener_{len(made)}"
                with ddl.cursor() as cursor:
                    cursor.execute(sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(name)))
                made[name] = time.monotonic()
            live = Table.objects.live().filter(database_id=database_id, name__in=list(made))
            for name in live.values_list("name", flat=True):
                seen.setdefault(name, time.monotonic() - made[name])
            if now - killed >= 15 and len(seen) == len(made):
                break
            time.sleep(0.05)
        with ddl.cursor() as cursor:
            for name in made:
                cursor.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
    finally:
        ddl.close()
    owner_after = ownership.owners([database_id])[database_id] or "?:0:?"
    after = role_of(service, int(owner_after.split(":")[-2]), ("listener", "listener-standby"))
    visible = sorted(seen.values())
    return {
        "killed": holder,
        "taken_over_by": after,
        "ddl_statements": len(made),
        "lost_changes": len(made) - len(seen),
        "ddl_to_visible_p50_s": round(statistics.median(visible), 2) if visible else None,
        "ddl_to_visible_max_s": round(visible[-1], 2) if visible else None,
    }


def beat_takeover(service: Service) -> dict[str, Any]:
    """Kill -9 the beat holding the lock; time until another one holds it."""
    holder = beat.lock_holder() or "?:0:?"
    pid = int(holder.split(":")[-2])
    killed_role = role_of(service, pid, ("beat", "beat-standby"))
    os.kill(pid, signal.SIGKILL)
    seconds = poll_until(
        lambda: (beat.lock_holder() or holder) != holder, "another beat to take the lock"
    )
    after = int((beat.lock_holder() or "?:0:?").split(":")[-2])
    return {
        "killed": killed_role,
        "taken_over_by": role_of(service, after, ("beat", "beat-standby")),
        "lock_taken_over_after_s": round(seconds, 2),
    }


def on_rabbitmq(service: Service, database_id: int, authorization: str) -> dict[str, Any]:
    """The roles again, on a RabbitMQ node of the bench's own as the broker; restart it."""
    service.stop_roles()
    os.environ.pop("SYNC_REDIS_COOLDOWN", None)
    directory = service.workdir / "rabbitmq"
    directory.mkdir()
    node = RabbitNode(directory, "dbsync-bench")
    os.environ["SYNC_BROKER_URL"] = f"{node.url}/dbsync-bench"
    report: dict[str, Any] = {}
    try:
        service.start_roles()
        traffic = Traffic(service.web_port, database_id, authorization)
        poll_until(lambda: first_fresh(traffic, 0) is not None, "the web on RabbitMQ", 120)
        with fault("rabbitmq_restarted", traffic, database_id, report) as facts:
            expire(database_id)  # the next list queues a reflection, on a broker going down
            stopped = time.monotonic()
            node.restart()
            facts["broker_down_s"] = round(time.monotonic() - stopped, 2)
        traffic.stop()
    finally:
        service.stop_supervisor()
        node.stop()
        del os.environ["SYNC_BROKER_URL"]
    return report


def hang_without_breaker(service: Service, database_id: int, authorization: str) -> dict[str, Any]:
    """The breaker's baseline: the same hang, the roles started again with SYNC_REDIS_COOLDOWN=0."""
    service.stop_roles()
    os.environ["SYNC_REDIS_COOLDOWN"] = "0"
    service.start_roles()
    traffic = Traffic(service.web_port, database_id, authorization)
    poll_until(lambda: first_fresh(traffic, 0) is not None, "the web without the breaker", 120)
    report: dict[str, Any] = {}
    with fault("redis_hangs_without_breaker", traffic, database_id, report):
        expire(database_id)
        service.redis.send_signal(signal.SIGSTOP)
        time.sleep(OUTAGE_SECONDS)
        service.redis.send_signal(signal.SIGCONT)
    traffic.stop()
    return report


def target_met(faults: dict[str, Any]) -> dict[str, Any]:
    """Every fault recovered within 30 s; no row lost; no 5xx but where the service database
    itself is down."""
    recovered = [fault["fresh_again_after_s"] for fault in faults.values()]
    fives = [f["answers_5xx"] for name, f in faults.items() if name != "service_database_restarted"]
    return {
        "recovered_within_s": TARGET_SECONDS,
        "met": all(r is not None and r <= TARGET_SECONDS for r in recovered)
        and all(fault["lost_rows"] == 0 for fault in faults.values())
        and not any(fives),
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="dbsync-bench-faults-") as workdir:
        service = Service(Path(workdir))
        try:
            database_id = prepare()
            service.start_roles()
            authorization = auth_header("token")
            traffic = Traffic(service.web_port, database_id, authorization)
            poll_until(lambda: first_fresh(traffic, 0) is not None, "the web", 120)
            baseline_start = time.monotonic()
            time.sleep(10)
            baseline = [s.seconds for s in traffic.between(baseline_start, 1e18) if s.status == 200]
            faults = run_faults(service, traffic, database_id)
            traffic.stop()
            faults |= hang_without_breaker(service, database_id, authorization)
            faults |= on_rabbitmq(service, database_id, authorization)
        finally:
            service.close()
    print(
        json.dumps(
            {
                "machine": machine(),
                "baseline_list_p50_ms": round(statistics.median(baseline) * 1000, 1),
                "faults": faults,
                "target": target_met(faults),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
