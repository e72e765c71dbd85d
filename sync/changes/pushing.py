"""The push channel's Redis side: publish each committed reflection, and hear them in a process.

Publishing is one PUBLISH of the database id on one channel, after the reflection's commit;
it never fails a reflection. Hearing is one subscription per push process (the Hub), which
hands each id to the open streams of that database: a hundred open pages cost one Redis
connection, and nothing at all while no database changes.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings

from sync.changes import store

logger = logging.getLogger(__name__)

CHANNEL = "dbsync:reflected"
# Every stream: what a stream of all databases (a staff member's databases page) waits on.
EVERY = 0
RECONNECT_SECONDS = (0.1, 0.5, 1, 2, 5)


def announce(database_id: int, **_: Any) -> None:
    """Publish that a database was reflected (receiver of sync.reflection.signals.reflected)."""
    try:
        store.client().publish(CHANNEL, str(database_id))
    except store.STATE_ERRORS as error:
        # Open pages poll as well, at a slower pace: a lost notice only delays them.
        logger.warning("push: could not publish the reflection of %s: %s", database_id, error)


class Hub:
    """One Redis subscription of this process, handed out to the streams that wait on it."""

    def __init__(self) -> None:
        self.streams: dict[int, set[asyncio.Queue[int]]] = {}
        self.task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def subscription(self, database_ids: set[int]) -> AsyncIterator[asyncio.Queue[int]]:
        """Yield a queue that receives the id of each of these databases when reflected.

        An empty set means every database. The queue holds one id at most: a page that has
        not yet read the last notice needs no second one to read again.
        """
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        keys = database_ids or {EVERY}
        for key in keys:
            self.streams.setdefault(key, set()).add(queue)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self.listen())
        try:
            yield queue
        finally:
            for key in keys:
                self.streams.get(key, set()).discard(queue)
                if not self.streams.get(key):
                    self.streams.pop(key, None)

    def hand_out(self, database_id: int) -> None:
        """Give the id to every stream of that database and to those of every database."""
        for queue in self.streams.get(database_id, set()) | self.streams.get(EVERY, set()):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(database_id)

    async def listen(self) -> None:
        """Hear the channel for as long as any stream is open, reconnecting after a failure.

        After a reconnect every stream hears a notice: a reflection may have been missed.
        """
        failures = 0
        while self.streams:
            client = aioredis.Redis.from_url(settings.SYNC_STATE_REDIS_URL)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    if failures:
                        for queues in list(self.streams.values()):
                            for queue in queues:
                                with contextlib.suppress(asyncio.QueueFull):
                                    queue.put_nowait(EVERY)
                    failures = 0
                    await self.relay(pubsub)
            except store.STATE_ERRORS as error:
                delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                failures += 1
                logger.warning("push: Redis subscription lost (%s); again in %s s", error, delay)
                await asyncio.sleep(delay)
            finally:
                await client.aclose()

    async def relay(self, pubsub: Any) -> None:
        """Hand out each published id until no stream is left."""
        while self.streams:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            if message is None:
                continue
            raw = message["data"]
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            if text.isdigit():
                self.hand_out(int(text))


# One per process: the push role runs one event loop, and every stream in it shares this.
hub = Hub()
