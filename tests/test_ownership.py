"""Listeners share the watched databases: an even split, one holder each, takeover of the dead."""

from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from sync.changes import ownership, store, watch
from sync.models import Database
from sync.reflection import registry, runs
from tests.helpers import (
    ListenerProcess,
    ScratchDatabase,
    create_scratch,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

SETTLE = 40  # a process's start and a takeover on a busy machine: a bound, not a measurement


def balance_all(listeners: list[str], database_ids: list[int], rounds: int = 3) -> Counter[str]:
    """Let each listener beat and balance in turn, a few rounds; return who holds how many."""
    for _ in range(rounds):
        for listener in listeners:
            ownership.beat(listener, [])
        for listener in listeners:
            ownership.balance(listener, database_ids)
    return Counter(owner for owner in ownership.owners(database_ids).values() if owner)


@pytest.mark.parametrize(("databases", "listeners"), [(10, 3), (3, 2), (2, 4), (1000, 4)], ids=str)
def test_the_databases_are_split_evenly_and_each_has_one_holder(db, databases, listeners):
    names = [f"listener-{n}" for n in range(listeners)]

    held = balance_all(names, list(range(1, databases + 1)))

    assert sum(held.values()) == databases  # every database held, by exactly one (a key each)
    assert max(held.values()) - min(held.get(name, 0) for name in names) <= 1


def test_a_new_listener_takes_its_share_from_the_others(db):
    ids = list(range(1, 10))
    balance_all(["a", "b"], ids)

    held = balance_all(["a", "b", "c"], ids)

    assert held == {"a": 3, "b": 3, "c": 3}


def test_the_databases_of_a_listener_that_stopped_beating_are_taken_over(db, settings):
    settings.SYNC_LISTENER_LEASE_SECONDS = 3
    ids = list(range(1, 7))
    balance_all(["a", "b"], ids)
    store_client = store.client()
    store_client.zadd(ownership.LISTENERS_KEY, {"b": 0})  # b's last beat, long ago
    for database_id, owner in ownership.owners(ids).items():
        if owner == "b":
            store_client.delete(ownership.owner_key(database_id))  # as its leases lapse

    ownership.beat("a", [])
    assert ownership.balance("a", ids) == set(ids)
    assert ownership.live_listeners() == ["a"]


def test_a_beat_renews_only_the_leases_still_held_and_names_the_lost(db):
    ownership.claim("a", [1, 2])
    store.client().set(ownership.owner_key(2), "b")  # taken over meanwhile

    assert ownership.beat("a", [1, 2]) == {2}
    ownership.release("a", [1, 2])
    assert ownership.owners([1, 2]) == {1: None, 2: "b"}


class Listeners:
    """Listener processes of a test, by name, and who holds what according to the leases."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: dict[str, ListenerProcess] = {}

    def start(self, name: str) -> ListenerProcess:
        self.processes[name] = ListenerProcess(self.directory / f"{name}.log")
        return self.processes[name]

    def counts(self, database_ids: list[int]) -> dict[str, int]:
        """Return how many of the databases each running listener holds, by name."""
        by_pid = {f":{p.process.pid}:": name for name, p in self.processes.items()}
        counts = dict.fromkeys(self.processes, 0)
        for owner in ownership.owners(database_ids).values():
            for marker, name in by_pid.items():
                if owner and marker in owner:
                    counts[name] += 1
        return counts


@pytest.fixture
def listeners(tmp_path: Path) -> Iterator[Listeners]:
    started = Listeners(tmp_path)
    yield started
    for process in started.processes.values():
        stop_process(process.process)
        print(process.text())  # shown by pytest when the test failed


@pytest.fixture
def four_watched(
    db, scratch_factory: list[ScratchDatabase]
) -> list[tuple[Database, ScratchDatabase]]:
    """Four registered databases, reflected once, their watch installed."""
    watched = []
    for n in range(4):
        scratch = create_scratch()
        scratch_factory.append(scratch)
        database, _ = registry.register(f"shared{n}", scratch.url)
        runs.reflect(database.id)
        watch.install(database)
        watched.append((database, scratch))
    return watched


def live_names(database: Database) -> set[str]:
    return set(database.schemas.get(name="public").tables.live().values_list("name", flat=True))


def test_a_listener_killed_during_ddl_loses_no_change_and_a_third_takes_its_share(
    worker, listeners, four_watched, staff
):
    ids = [database.id for database, _ in four_watched]
    listeners.start("first")
    listeners.start("second")
    wait_until(lambda: listeners.counts(ids) == {"first": 2, "second": 2}, SETTLE, "the split")

    killed = listeners.processes["first"]
    for round_ in range(6):
        if round_ == 2:
            killed.kill()  # while the other client keeps making DDL
        for _, scratch in four_watched:
            scratch.execute(f"CREATE TABLE made_{round_} (id int)")
    expected = {"made_" + str(r) for r in range(6)}
    for database, _ in four_watched:
        wait_until(partial(lambda d: expected <= live_names(d), database), SETTLE, database.name)
    del listeners.processes["first"]
    wait_until(lambda: listeners.counts(ids) == {"second": 4}, SETTLE, "the takeover")

    listeners.start("third")
    wait_until(lambda: listeners.counts(ids) == {"second": 2, "third": 2}, SETTLE, "the share")
    for database, scratch in four_watched:
        scratch.execute("CREATE TABLE after_the_share (id int)")
        wait_until(partial(lambda d: "after_the_share" in live_names(d), database), SETTLE)
    metrics = staff.get("/metrics").content.decode()
    held = [line for line in metrics.splitlines() if line.startswith("dbsync_listener_databases")]
    assert sorted(float(line.rsplit(" ", 1)[1]) for line in held) == [2.0, 2.0], held
    killed.process.wait(timeout=10)
