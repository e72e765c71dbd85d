"""Benchmark list latency under gunicorn and a Celery worker, with a fresh and an expired key,
against a minimal Django view that returns the same rows (bench/minimal_list.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script
from bench.isolate import isolate

isolate("dbsync_bench_api")

import argparse
import base64
import http.client
import json
import math
import os
import secrets
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType
from typing import Any

import redis
from celery import Celery
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.utils import timezone
from psycopg2 import sql
from rest_framework.authtoken.models import Token

from bench.common import connect, ensure_database, free_port, log, machine, service, tail
from sync.changes import (
    leases,
    queues,
    recency,
    store,
)
from sync.exceptions import IdentityChanged
from sync.models import Database, DatabaseGrant, ReflectionRun, Table
from sync.ops import demo
from sync.reflection import registry
from sync.reflection.runs import reflect
from worker.app import app as celery_app

USER_DATABASE = "dbsync_bench_api_user"  # kept between runs
REGISTERED_NAME = "bench_api_user"
SCHEMA = "bench_api"
MARKER = "dbsync bench: list latency"
BENCH_USER = "bench_list_reader"
CONTROL_ID = -1  # no database has this id: the fresh phase deletes its recency key instead
FINISHED = ("task-succeeded", "task-failed", "task-rejected", "task-revoked", "task-retried")


def ensure_tables(tables: int) -> str:
    """Create the tables t0000.. of the kept user database up to `tables`; return its URL."""
    statements = [sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA))]
    statements += [
        sql.SQL("CREATE TABLE IF NOT EXISTS {}.{} (id int)").format(
            sql.Identifier(SCHEMA), sql.Identifier(f"t{number:04d}")
        )
        for number in range(tables)
    ]
    pg = connect(USER_DATABASE)
    try:
        with pg.cursor() as cursor:
            cursor.execute(sql.SQL("; ").join(statements))
    finally:
        pg.close()
    return demo.server_url(USER_DATABASE).set(drivername="postgresql").render_as_string(False)


def prepare_databases(tables: int) -> int:
    """Migrate the bench service database, register the user database, reflect it once."""
    ensure_database(settings.DATABASES["default"]["NAME"])
    ensure_database(USER_DATABASE, MARKER)
    call_command("migrate", interactive=False, verbosity=0)
    database, _ = registry.register(REGISTERED_NAME, ensure_tables(tables))
    grant_bench_reader(database)
    try:
        result = reflect(database.id)
    except IdentityChanged:  # the kept user database was dropped and created again
        result = reflect(database.id, accept_new_identity=True)
    log(f"reflected {USER_DATABASE} in {result.duration_ms} ms: {result.counts}")
    return database.id


def grant_bench_reader(database: Database) -> None:
    """Let the bench's reader list the database: through a grant to its group, as any reader."""
    readers, _ = Group.objects.get_or_create(name=BENCH_USER)
    DatabaseGrant.objects.get_or_create(database=database, group=readers)


def auth_header(scheme: str) -> str:
    """Create or refresh the bench's reader; return its Authorization header value."""
    user, _ = get_user_model().objects.get_or_create(username=BENCH_USER)
    user.groups.add(Group.objects.get_or_create(name=BENCH_USER)[0])
    if scheme == "token":
        return f"Token {Token.objects.get_or_create(user=user)[0].key}"
    password = secrets.token_urlsafe(16)
    user.set_password(password)
    user.save(update_fields=["password"])
    return "Basic " + base64.b64encode(f"{BENCH_USER}:{password}".encode()).decode()


def reset_reflection_state(database_id: int) -> None:
    """Empty the bench broker's queue and drop the lease and back-off of the database."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        broker.delete(*queues.QUEUES, "unacked", "unacked_index")  # kombu's Redis transport keys
    finally:
        broker.close()
    store.client().delete(store.lease_key(database_id), store.backoff_key(database_id))


def wait_until(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    """Poll until ready, for at most 60 s, failing at once if the process died."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}")
        if ready():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after 60 s")


class TaskEvents:
    """Count Celery task and worker events: task-sent comes from the publisher (gunicorn)."""

    def __init__(self, app: Celery) -> None:
        self.counts: Counter[str] = Counter()
        self.results: Counter[str] = Counter()
        self.hosts: set[str] = set()
        self.guard = threading.Lock()
        self.connection = app.connection_for_read()
        self.receiver = app.events.Receiver(self.connection, handlers={"*": self.on_event})
        self.thread = threading.Thread(target=self.capture, name="task-events", daemon=True)

    def capture(self) -> None:
        self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def on_event(self, event: dict[str, Any]) -> None:
        with self.guard:
            kind = str(event.get("type", ""))
            self.hosts.add(str(event.get("hostname", "")))
            if kind.startswith("task-"):
                self.counts[kind] += 1
            if kind == "task-succeeded":
                self.results[str(event.get("result", "")).strip("'\"")] += 1

    def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        with self.guard:
            return Counter(self.counts), Counter(self.results)

    def settled(self) -> bool:
        """Every task sent was received and has finished."""
        with self.guard:
            finished = sum(self.counts[kind] for kind in FINISHED)
            return self.counts["task-sent"] == self.counts["task-received"] == finished

    def close(self) -> None:
        self.receiver.should_stop = True
        self.thread.join(timeout=5)
        self.connection.release()


@dataclass(frozen=True)
class Target:
    port: int
    path: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Sample:
    ms: float
    status: int  # 0: no answer (connection error)
    reflection: str  # the X-Reflection-Status header, "-" if absent


def get(connection: http.client.HTTPConnection, target: Target) -> Sample:
    """Send one list request over the client's connection and time it to the last byte."""
    started = time.perf_counter()
    try:
        connection.request("GET", target.path, headers=target.headers)
        response = connection.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as error:
        connection.close()  # the next request reconnects
        return Sample((time.perf_counter() - started) * 1000, 0, type(error).__name__)
    elapsed = (time.perf_counter() - started) * 1000
    return Sample(elapsed, response.status, response.getheader("X-Reflection-Status") or "-")


def client(
    target: Target, count: int, expire: int, gate: threading.Barrier, budget: float
) -> list[Sample]:
    """One client: `count` requests in a row, each just after deleting a recency key.

    The key of the listed database in the expired phase; in the fresh phase the key of
    CONTROL_ID, which no database has, so that both phases do the same client-side work.

    One connection per client; gunicorn's sync workers close it after every answer, and
    http.client then reconnects on the next request (the connect is part of the latency).
    """
    connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
    samples: list[Sample] = []
    try:
        gate.wait(timeout=30)
        deadline = time.monotonic() + budget
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            recency.expire(expire)  # through Django's cache, from this thread
            samples.append(get(connection, target))
    finally:
        connection.close()
    return samples


def run_clients(
    target: Target, clients: int, count: int, expire: int, budget: float
) -> tuple[list[Sample], float, bool]:
    """Start the clients together; return their samples, the wall time and whether cut short."""
    gate = threading.Barrier(clients + 1)
    with ThreadPoolExecutor(max_workers=clients, thread_name_prefix="client") as pool:
        futures = [pool.submit(client, target, count, expire, gate, budget) for _ in range(clients)]
        gate.wait(timeout=30)
        started = time.perf_counter()
        samples = [sample for future in futures for sample in future.result()]
        wall = time.perf_counter() - started
    return samples, wall, len(samples) < clients * count


def drain(events: TaskEvents, database_id: int, timeout: float) -> bool:
    """Wait until no reflection is queued or running and every sent task has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if leases.holder(database_id) is None and events.settled():
            return True
        time.sleep(0.1)
    return False


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def latency(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}
    return {
        "count": len(ordered),
        "p50_ms": round(percentile(ordered, 50), 1),
        "p90_ms": round(percentile(ordered, 90), 1),
        "p99_ms": round(percentile(ordered, 99), 1),
        "max_ms": round(ordered[-1], 1),
        "mean_ms": round(statistics.fmean(ordered), 1),
    }


def summary(samples: list[Sample], wall: float, cut_short: bool) -> dict[str, Any]:
    """Latency of all requests and by X-Reflection-Status; status codes; throughput."""
    by_status: dict[str, list[float]] = {}
    for sample in samples:
        by_status.setdefault(sample.reflection, []).append(sample.ms)
    return {
        **latency([sample.ms for sample in samples]),
        "requests_per_s": round(len(samples) / wall, 1) if wall else None,
        "wall_s": round(wall, 2),
        "cut_short": cut_short,
        "status_codes": dict(Counter(str(sample.status) for sample in samples)),
        "reflection_status": {key: len(values) for key, values in sorted(by_status.items())},
        "latency_by_reflection_status": {
            key: latency(values) for key, values in sorted(by_status.items())
        },
    }


def task_counts(
    before: tuple[Counter[str], Counter[str]],
    after: tuple[Counter[str], Counter[str]],
    runs: int,
    samples: list[Sample],
    expiries: int,
) -> dict[str, Any]:
    """What the phase published and what the worker did with it."""
    counts, results = after[0] - before[0], after[1] - before[1]
    sent = counts["task-sent"]
    return {
        "expiries": expiries,
        "tasks_published": sent,
        "tasks_received_by_worker": counts["task-received"],
        "task_results": dict(results),
        "task_failures": sum(counts[kind] for kind in FINISHED[1:]),
        "reflection_runs_recorded": runs,
        "queued_answers": sum(1 for sample in samples if sample.reflection == "queued"),
        "tasks_per_expiry": round(sent / expiries, 3) if expiries else None,
    }


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def proc_stat(entry: Path) -> list[str]:
    """The fields of /proc/PID/stat after the command name: [0] state, [2] pgrp, [11] utime."""
    return (entry / "stat").read_text().rsplit(")", 1)[1].split()


def backend_database(entry: Path) -> str | None:
    """The database of a PostgreSQL backend, from "postgres: [cluster:] user database ..."."""
    title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").split()
    if not title or title[0] != b"postgres:":
        return None
    words = [word for word in title[1:] if not word.endswith(b":")]
    return words[1].decode(errors="replace") if len(words) > 1 else None


def cpu_seconds(groups: dict[str, int], databases: set[str]) -> dict[str, float]:
    """CPU time so far of our process groups, of the backends of our databases, of the machine.

    Processes that ended are not counted: the workers of gunicorn and Celery live throughout.
    """
    seconds = dict.fromkeys(("gunicorn", "celery", "postgres"), 0.0)
    seconds["bench"] = time.process_time()
    by_pgid = {pgid: name for name, pgid in groups.items()}
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit():
                continue
            fields = proc_stat(entry)
            name = by_pgid.get(int(fields[2]))
            if name is None:
                name = "postgres" if backend_database(entry) in databases else None
            if name is not None:
                seconds[name] += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        except (OSError, ValueError, IndexError):
            continue  # the process ended meanwhile
    busy = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    seconds["machine"] = sum(int(busy[i]) for i in (0, 1, 2, 5, 6, 7)) / CLOCK_TICKS
    return seconds


def cpu_report(used: dict[str, float], requests: int, wall: float) -> dict[str, Any]:
    """CPU per request of each part, and the cores busy meanwhile: ours and everyone else's."""
    ours = sum(value for key, value in used.items() if key != "machine")
    parts = ("gunicorn", "celery", "postgres", "bench")
    return {
        "cpu_ms_per_request": {
            key: round(used[key] * 1000 / requests, 2) if requests else None for key in parts
        },
        "cores_busy_ours": round(ours / wall, 2) if wall else None,
        "cores_busy_others": round(max(0.0, used["machine"] - ours) / wall, 2) if wall else None,
    }


@dataclass(frozen=True)
class Run:
    """What every phase works with."""

    target: Target
    minimal: Target  # the same rows from the minimal view, the baseline
    events: TaskEvents
    database_id: int
    groups: dict[str, int]  # gunicorn and celery: their process group ids
    databases: set[str]  # the service and user databases, for their backends' CPU time
    args: argparse.Namespace
    deadline: float  # time.monotonic() by which the phases must be over

    def budget(self, most: float) -> float:
        """Seconds a step may take: at most `most`, and never past the deadline (but 1 s)."""
        return max(1.0, min(most, self.deadline - time.monotonic()))


def measure(run: Run, expire: int, target: Target) -> tuple[dict[str, Any], list[Sample]]:
    """One measured run of the clients, with its latency and CPU summary."""
    args = run.args
    cpu_before = cpu_seconds(run.groups, run.databases)
    samples, wall, cut_short = run_clients(
        target, args.clients, args.requests, expire, run.budget(args.phase_budget)
    )
    cpu_after = cpu_seconds(run.groups, run.databases)
    used = {key: cpu_after[key] - cpu_before[key] for key in cpu_after}
    result = summary(samples, wall, cut_short)
    result.update(cpu_report(used, len(samples), wall))
    return result, samples


def phase(name: str, run: Run) -> tuple[dict[str, Any], list[Sample]]:
    """Warm up with the key fresh, then measure: with it kept fresh, or expired before every
    request. The warm-up queues nothing, so that the first expiry is measured too."""
    args, database_id = run.args, run.database_id
    expire = database_id if name == "expired" else CONTROL_ID
    target = run.minimal if name == "minimal" else run.target
    recency.mark_recent(database_id, timezone.now())
    log(f"{name}: warm-up, {args.clients} clients x {args.warmup} requests")
    run_clients(target, args.clients, args.warmup, CONTROL_ID, run.budget(args.phase_budget))
    drained_before = drain(run.events, database_id, run.budget(30))
    before = run.events.snapshot()
    last_run = ReflectionRun.objects.order_by("-id").values_list("id", flat=True).first() or 0
    log(f"{name}: measuring, {args.clients} clients x {args.requests} requests")
    result, samples = measure(run, expire, target)
    drained_after = drain(run.events, database_id, run.budget(30))
    time.sleep(0.5)  # late events of the last task
    runs = ReflectionRun.objects.filter(
        database_id=database_id, trigger=ReflectionRun.Trigger.LIST, id__gt=last_run
    ).count()
    expiries = len(samples) if name == "expired" else 0
    result["tasks"] = task_counts(before, run.events.snapshot(), runs, samples, expiries)
    result["drained"] = drained_before and drained_after
    log(f"{name}: p50 {result.get('p50_ms')} ms, p99 {result.get('p99_ms')} ms")
    return result, samples


def alternate(run: Run) -> dict[str, dict[str, Any]]:
    """Run the fresh, the expired and the minimal phase in turn, round after round, and pool
    each one's.

    Alternating short rounds spreads the machine's drift (other tenants, frequency changes)
    over the phases alike, where one long phase after the other would hand it to one.
    """
    rounds: dict[str, list[tuple[dict[str, Any], list[Sample]]]] = {
        "fresh": [], "expired": [], "minimal": []
    }  # fmt: skip
    for number in range(1, run.args.rounds + 1):
        for name, done in rounds.items():
            log(f"round {number} of {run.args.rounds}")
            done.append(phase(name, run))
    return {name: pooled(done) for name, done in rounds.items()}


def pooled(rounds: list[tuple[dict[str, Any], list[Sample]]]) -> dict[str, Any]:
    """The latency of all the rounds' requests together, with what each round measured."""
    samples = [sample for _, round_samples in rounds for sample in round_samples]
    results = [result for result, _ in rounds]
    tasks: Counter[str] = Counter()
    for result in results:
        tasks.update({k: v for k, v in result["tasks"].items() if isinstance(v, int)})
    expiries, sent = tasks["expiries"], tasks["tasks_published"]
    return {
        **latency([sample.ms for sample in samples]),
        "status_codes": dict(Counter(str(sample.status) for sample in samples)),
        "tasks": {
            **tasks,
            "task_results": sum((Counter(r["tasks"]["task_results"]) for r in results), Counter()),
            "tasks_per_expiry": round(sent / expiries, 3) if expiries else None,
        },
        "drained": all(result["drained"] for result in results),
        "p99_ms_by_round": [result.get("p99_ms") for result in results],
        "rounds": results,
    }


def web_cpu_ms(phase: dict[str, Any]) -> float:
    """gunicorn's CPU per request, averaged over the phase's rounds."""
    return statistics.mean(r["cpu_ms_per_request"]["gunicorn"] for r in phase["rounds"])


def targets(
    fresh: dict[str, Any], expired: dict[str, Any], minimal: dict[str, Any]
) -> dict[str, Any]:
    ratio = expired["p99_ms"] / fresh["p99_ms"]
    versus_minimal = {
        f"fresh_{p}_vs_minimal_{p}": round(fresh[f"{p}_ms"] / minimal[f"{p}_ms"], 2)
        for p in ("p50", "p99")
    }
    versus_minimal["fresh_web_cpu_per_request_vs_minimal"] = round(
        web_cpu_ms(fresh) / web_cpu_ms(minimal), 2
    )
    by_round = zip(expired["p99_ms_by_round"], fresh["p99_ms_by_round"], strict=True)
    tasks = expired["tasks"]
    codes = {**fresh["status_codes"], **expired["status_codes"]}
    return {
        **versus_minimal,
        "fresh_within_1_5x_minimal": versus_minimal["fresh_p99_vs_minimal_p99"] <= 1.5,
        "expired_p99_vs_fresh_p99": round(ratio, 2),
        "expired_p99_vs_fresh_p99_by_round": [round(e / f, 2) for e, f in by_round],
        "expired_p99_within_1_1x_fresh": ratio <= 1.1,
        "at_most_one_task_per_expiry": tasks["tasks_published"] <= tasks["expiries"]
        and tasks["task_results"].get("duplicate", 0) == 0,
        "no_task_with_fresh_key": fresh["tasks"]["tasks_published"] == 0,
        "all_200": set(codes) == {"200"},
        "counts_consistent": tasks["tasks_published"] == tasks["tasks_received_by_worker"]
        and fresh["drained"]
        and expired["drained"],
    }


def commands(port: int, args: argparse.Namespace) -> dict[str, list[str]]:
    """The Procfile's web and worker commands, on a free loopback port, logging warnings."""
    return {
        "gunicorn": [
            sys.executable, "-m", "gunicorn", "project.wsgi", "--bind", f"127.0.0.1:{port}",
            "--workers", str(args.gunicorn_workers), "--log-level", "warning",
        ],
        "celery": [
            sys.executable, "-m", "celery", "-A", "worker", "worker", "--loglevel", "WARNING",
            "--concurrency", "2", "--events", "--queues", "interactive,bulk",
            "--hostname", f"benchlist{os.getpid()}@%h",
        ],
    }  # fmt: skip


def answers(target: Target) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=5)
    try:
        return get(connection, target).status == 200
    finally:
        connection.close()


def serve_and_measure(
    database_id: int, target: Target, minimal: Target, logs: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Start the worker and gunicorn, measure both phases, and stop them whatever happens."""
    events = TaskEvents(celery_app)
    events.thread.start()
    argv = commands(target.port, args)
    worker_name = argv["celery"][-1].replace("%h", socket.gethostname())
    databases = {settings.DATABASES["default"]["NAME"], USER_DATABASE}
    try:
        with service("celery", argv["celery"], logs) as worker:
            wait_until(lambda: worker_name in events.hosts, worker, "celery worker")
            with service("gunicorn", argv["gunicorn"], logs) as web:
                wait_until(lambda: answers(target), web, "gunicorn")
                log(f"gunicorn on 127.0.0.1:{target.port} and worker {worker_name} ready")
                groups = {"gunicorn": web.pid, "celery": worker.pid}
                deadline = time.monotonic() + args.time_limit
                run = Run(target, minimal, events, database_id, groups, databases, args, deadline)
                pooled_phases = alternate(run)
    except RuntimeError:
        for name in ("celery", "gunicorn"):
            if (logs / f"{name}.log").exists():
                log(f"{name} log:\n{tail(logs / f'{name}.log')}")
        raise
    finally:
        events.close()
    fresh, expired, minimal_view = (pooled_phases[k] for k in ("fresh", "expired", "minimal"))
    return {
        "fresh_key": fresh,
        "expired_key": expired,
        "minimal_view": minimal_view,
        "targets": targets(fresh, expired, minimal_view),
    }


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=50, help="measured requests per client")
    parser.add_argument("--rounds", type=int, default=4, help="fresh, then expired: how often")
    parser.add_argument(
        "--min-gap",
        type=int,
        help="SYNC_MIN_REFLECTION_GAP for gunicorn (default: the setting's); 0 lets every expiry"
        " queue a reflection as soon as the last one ended",
    )
    parser.add_argument("--warmup", type=int, default=5, help="warm-up requests per client")
    parser.add_argument("--tables", type=int, default=200, help="tables in the user database")
    parser.add_argument("--gunicorn-workers", type=int, default=2, help="as in the Procfile")
    parser.add_argument("--phase-budget", type=float, default=90, help="seconds per client run")
    parser.add_argument("--time-limit", type=float, default=300, help="seconds for all phases")
    parser.add_argument(
        "--auth",
        choices=["token", "basic"],
        default="token",
        help="token (default) or HTTP Basic, which runs PBKDF2 (1M rounds) on every request",
    )
    return parser.parse_args()


def on_terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop subprocesses


def main() -> None:
    arguments = parse_arguments()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_terminate)
    started = time.perf_counter()
    if arguments.min_gap is not None:  # for the gunicorn this script starts
        os.environ["SYNC_MIN_REFLECTION_GAP"] = str(arguments.min_gap)
    database_id = prepare_databases(arguments.tables)
    reset_reflection_state(database_id)
    headers = {"Authorization": auth_header(arguments.auth), "Host": "127.0.0.1"}
    target = Target(free_port(), f"/api/v1/tables/?database={database_id}", headers)
    minimal = Target(target.port, f"/bench/minimal-list/?database={database_id}", headers)
    # gunicorn serves the minimal view too; nothing else differs from project.settings.
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.minimal_settings"
    report: dict[str, Any] = {"machine": machine()}
    report["setup"] = {
        "clients": arguments.clients, "requests_per_client": arguments.requests,
        "rounds": arguments.rounds,
        "min_reflection_gap_s": int(
            os.environ.get("SYNC_MIN_REFLECTION_GAP", settings.SYNC_MIN_REFLECTION_GAP)
        ),
        "warmup_per_client": arguments.warmup, "tables": arguments.tables,
        "gunicorn_workers": arguments.gunicorn_workers, "celery_concurrency": 2,
        "auth": arguments.auth, "path": target.path,
        "relations_listed": Table.objects.live().filter(database_id=database_id).count(),
        "before_each_request": "expired: delete the database's recency key; fresh: delete the "
        f"key of database {CONTROL_ID} (none), the same client-side work",
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="dbsync-bench-list-") as logs:
        report.update(serve_and_measure(database_id, target, minimal, Path(logs), arguments))
    report["machine"]["load_average_at_end"] = [round(load, 2) for load in os.getloadavg()]
    report["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
