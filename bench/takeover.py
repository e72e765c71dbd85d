"""Listeners at scale (bench/scale.py --listeners N): the split, a kill -9, the takeover.

Installs the watch in every database, starts N listeners and one worker, and waits until every
database is held. Then: the PostgreSQL connections of each listener (psutil), DDL-to-visible
on an idle fleet, and after a kill -9 of one listener, the seconds until a change made in each
of its databases right after the kill is visible (the takeover, its reflection included),
beside DDL-to-visible in the other listeners' databases meanwhile.
"""

import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psutil

from bench.common import connect, log, service
from sync.changes import ownership, watch
from sync.models import Database, Table

PYTHON_LISTEN = ["manage.py", "listen"]


def install_watches(databases: list[Database]) -> None:
    for database in databases:
        watch.install(database)


def owners_by_pid(pids: list[int], database_ids: list[int]) -> dict[int, list[int]]:
    """Return the databases each listener process holds, by its pid."""
    held: dict[int, list[int]] = {pid: [] for pid in pids}
    for database_id, owner in ownership.owners(database_ids).items():
        for pid in pids:
            if owner and f":{pid}:" in owner:
                held[pid].append(database_id)
    return held


def postgres_connections(pid: int) -> int:
    """Count the process's TCP connections to PostgreSQL (its LISTENs and the service's)."""
    connections = psutil.Process(pid).net_connections(kind="tcp")
    return sum(1 for c in connections if c.raddr and c.raddr.port == 5432)


def wait(ready: Callable[[], bool], what: str, seconds: float = 180) -> float:
    started = time.monotonic()
    while not ready():
        if time.monotonic() - started > seconds:
            raise RuntimeError(f"{what}: not within {seconds:.0f} s")
        time.sleep(0.1)
    return time.monotonic() - started


class Changes:
    """DDL in the databases, each timed until its table is visible in the models."""

    def __init__(self, names: dict[int, str]) -> None:
        self.names = names
        self.pending: dict[tuple[int, str], float] = {}
        self.seconds: dict[tuple[int, str], float] = {}
        self.count = 0

    def make(self, database_id: int) -> tuple[int, str]:
        self.count += 1
        table = f"bench_takeover_{int(time.time())}_{self.count}"
        pg = connect(self.names[database_id], name="dbsync-bench-takeover")
        try:
            with pg.cursor() as cursor:
                cursor.execute(f"CREATE TABLE {table} (id int)")
        finally:
            pg.close()
        key = (database_id, table)
        self.pending[key] = time.monotonic()
        return key

    def drop_all(self) -> None:
        """Drop the tables made: the databases are the renewal bench's, kept between runs."""
        for database_id, table in list(self.seconds) + list(self.pending):
            pg = connect(self.names[database_id], name="dbsync-bench-takeover")
            try:
                with pg.cursor() as cursor:
                    cursor.execute(f"DROP TABLE IF EXISTS {table}")
            finally:
                pg.close()

    def check(self) -> None:
        for (database_id, table), started in list(self.pending.items()):
            live = Table.objects.live().filter(database_id=database_id, name=table)
            if live.exists():
                self.seconds[(database_id, table)] = time.monotonic() - started
                del self.pending[(database_id, table)]

    def settle(self, keys: list[tuple[int, str]], limit: float = 60) -> None:
        deadline = time.monotonic() + limit
        while any(key in self.pending for key in keys) and time.monotonic() < deadline:
            self.check()
            time.sleep(0.05)


def summary(seconds: list[float]) -> dict[str, Any]:
    if not seconds:
        return {"changes": 0}
    ordered = sorted(seconds)
    return {
        "changes": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def idle_latency(changes: Changes, database_ids: list[int], rounds: int) -> dict[str, Any]:
    keys = []
    for database_id in random.sample(database_ids, min(rounds, len(database_ids))):
        key = changes.make(database_id)
        changes.settle([key])
        keys.append(key)
        time.sleep(0.2)
    return summary([changes.seconds[key] for key in keys if key in changes.seconds])


def after_a_kill(
    changes: Changes, orphans: list[int], others: list[int], held_again: Callable[[], bool]
) -> dict[str, Any]:
    """Change each orphaned database at once, and the others one by one meanwhile."""
    killed_at = time.monotonic()
    orphaned = [changes.make(database_id) for database_id in orphans]
    meanwhile, taken_over = [], None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        taken_over is None or any(key in changes.pending for key in orphaned)
    ):
        key = changes.make(random.choice(others))
        changes.settle([key], limit=15)
        meanwhile.append(key)
        if taken_over is None and held_again():
            taken_over = round(time.monotonic() - killed_at, 2)
    changes.settle(orphaned, limit=1)
    lost = [key for key in orphaned if key not in changes.seconds]
    takeover = summary([changes.seconds[key] for key in orphaned if key in changes.seconds])
    return {
        "orphaned_databases": len(orphans),
        "leases_all_taken_over_by_s": taken_over,
        "ddl_to_visible_in_orphaned_databases": {**takeover, "lost_changes": len(lost)},
        "ddl_to_visible_elsewhere_meanwhile": summary(
            [changes.seconds[k] for k in meanwhile if k in changes.seconds]
        ),
    }


@contextmanager
def listeners(count: int, logs: Path) -> Iterator[list[Any]]:
    with ExitStack() as stack:
        yield [
            stack.enter_context(service(f"listener-{n}", [sys.executable, *PYTHON_LISTEN], logs))
            for n in range(count)
        ]


def measure(databases: list[Database], count: int, logs: Path) -> dict[str, Any]:
    """Run the listeners over the watched databases; kill one; report the takeover. The
    databases are the renewal bench's too: their watch is removed again after."""
    install_watches(databases)
    changes = Changes({database.id: database.name for database in databases})
    try:
        return split_and_kill(databases, count, logs, changes)
    finally:
        changes.drop_all()
        for database in Database.objects.filter(pk__in=[d.pk for d in databases]):
            watch.uninstall(database)


def split_and_kill(
    databases: list[Database], count: int, logs: Path, changes: Changes
) -> dict[str, Any]:
    ids = [database.id for database in databases]
    with listeners(count, logs) as processes:
        pids = [process.pid for process in processes]
        spread_s = wait(
            lambda: sum(len(v) for v in owners_by_pid(pids, ids).values()) == len(ids),
            "every database held",
        )
        wait(lambda: all(postgres_connections(pid) > 0 for pid in pids), "the connections")
        time.sleep(3)  # the last connects, and their reflections
        held = owners_by_pid(pids, ids)
        report: dict[str, Any] = {
            "watched_databases": len(ids),
            "listeners": count,
            "all_held_after_start_s": round(spread_s, 2),
            "databases_per_listener": sorted(len(v) for v in held.values()),
            "postgres_connections_per_listener": sorted(postgres_connections(p) for p in pids),
        }
        log(f"split: {report}")
        report["ddl_to_visible_idle"] = idle_latency(changes, ids, 20)
        log(f"idle: {report['ddl_to_visible_idle']}")
        victim = processes[0]
        orphans = held[victim.pid]
        victim.kill()  # kill -9 of the listener's own process
        victim.wait()
        survivors = [pid for pid in pids if pid != victim.pid]

        def held_again() -> bool:
            return sum(len(v) for v in owners_by_pid(survivors, ids).values()) == len(ids)

        others = [i for i in ids if i not in orphans]
        report["after_kill_9"] = after_a_kill(changes, orphans, others, held_again)
        report["after_kill_9"]["databases_per_listener"] = sorted(
            len(v) for v in owners_by_pid(survivors, ids).values()
        )
        log(f"after the kill: {report['after_kill_9']}")
    return report
