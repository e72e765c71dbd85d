"""Two beats, one schedule: the lock's holder schedules, the standby takes over, no job twice."""

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import cast

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from project.settings import _redis_url
from sync.changes import queues
from tests.helpers import process_environment, stop_process, wait_until
from worker import beat
from worker.schedule import install_schedule

pytestmark = pytest.mark.django_db(transaction=True)

# The beats of these tests send to a broker of their own (no worker takes their messages) and
# lock in a state Redis of their own: the Redis databases 12 (broker) and 15 (state).
BEATS_REDIS_URL = _redis_url(settings.REDIS_URL, 4)
SETTLE = 30


class Beats:
    """Beat processes, their broker and their state Redis."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: list[subprocess.Popen[bytes]] = []
        self.broker = redis.Redis.from_url(_redis_url(BEATS_REDIS_URL, 8))
        self.state = redis.Redis.from_url(_redis_url(BEATS_REDIS_URL, 11), decode_responses=True)
        self.broker.flushdb()
        self.state.flushdb()

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.directory / f"beat-{len(self.processes)}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", "beat", "--loglevel", "INFO"],
            env={**process_environment(), "REDIS_URL": BEATS_REDIS_URL},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def holder(self) -> subprocess.Popen[bytes] | None:
        """Return the beat process holding the lock, if any."""
        held = cast(str | None, self.state.get(beat.LOCK_KEY)) or ""
        return next((p for p in self.processes if f":{p.pid}:" in held), None)

    def messages(self) -> list[dict[str, str]]:
        """Return the headers of the jobs the beats sent, oldest first."""
        raw = [
            message
            for queue in (queues.BULK, queues.INTERACTIVE)
            for message in cast(list[bytes], self.broker.lrange(queue, 0, -1))
        ]
        # kombu's Redis transport pushes on the left: the oldest message is the last.
        return [json.loads(message)["headers"] for message in reversed(raw)]

    def sent(self) -> Counter[str]:
        """Count the jobs the beats sent, by task name."""
        return Counter(headers["task"] for headers in self.messages())

    def senders(self, messages: list[dict[str, str]]) -> set[int]:
        """Return the pids of the processes that sent these messages (origin gen<pid>@host)."""
        return {int(headers["origin"].removeprefix("gen").split("@")[0]) for headers in messages}


@pytest.fixture
def beats(tmp_path: Path) -> Iterator[Beats]:
    started = Beats(tmp_path)
    yield started
    for process in started.processes:
        stop_process(process)
    for log in sorted(tmp_path.glob("beat-*.log")):
        print(log.read_text())  # shown by pytest when the test failed


def test_the_standby_takes_over_when_the_active_beat_is_killed_and_sends_no_job_twice(beats):
    install_schedule()
    long_ago = timezone.now() - timedelta(days=2)
    # Due at the first tick, then not for a minute (or a day): one send each in this test.
    PeriodicTask.objects.exclude(task="sync.tasks.poll_databases").update(last_run_at=long_ago)
    beats.start()
    beats.start()
    wait_until(lambda: beats.holder() is not None, SETTLE, "a beat to take the lock")
    wait_until(lambda: beats.sent()["sync.tasks.poll_databases"] >= 2, SETTLE, "two polls")

    active = beats.holder()
    assert active is not None
    stop_process(active)  # kill -9
    before = beats.messages()
    polls_before = beats.sent()["sync.tasks.poll_databases"]
    wait_until(lambda: beats.holder() not in (None, active), SETTLE, "the standby to take over")
    wait_until(
        lambda: beats.sent()["sync.tasks.poll_databases"] >= polls_before + 2,
        SETTLE,
        "the polls to go on after the takeover",
    )

    after = beats.messages()[len(before) :]
    standby = beats.holder()
    assert standby is not None
    assert beats.senders(before) == {active.pid}  # one beat scheduled while both ran
    assert beats.senders(after) == {standby.pid}
    sent = beats.sent()
    # Due once in this test: sent once, not again by the beat that took over.
    assert sent["sync.tasks.renew_databases"] == 1
    assert sent["sync.tasks.import_new_databases"] == 1
    assert sent["sync.tasks.purge_dropped"] == 1


def test_a_beat_stopped_cleanly_gives_the_lock_back(beats):
    first = beats.start()
    wait_until(lambda: beats.holder() is first, SETTLE, "the beat to take the lock")

    first.terminate()
    first.wait(timeout=SETTLE)

    assert beats.state.get(beat.LOCK_KEY) is None
