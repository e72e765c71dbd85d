"""Publish dbsync's tasks by name on a broker connection kept per thread, with tight timeouts."""

import contextlib
import os
import threading
from typing import Any

from amqp.exceptions import AMQPError
from celery import current_app
from django.conf import settings
from kombu import Producer
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from sync.changes import task_names

# Tight timeouts, by transport: Redis' client, or RabbitMQ's (py-amqp) connection.
PUBLISH_TIMEOUTS = {
    "redis": {"socket_connect_timeout": 0.5, "socket_timeout": 1.0},
    # And no retries of the connect: kombu's default retries it for 4 s (broker_connection_timeout).
    "amqp": {"connect_timeout": 0.5, "read_timeout": 1.0, "write_timeout": 1.0, "max_retries": 0},
}
# What a broker that is down or restarting raises: kombu's, Redis' and RabbitMQ's errors.
PUBLISH_ERRORS = (BrokerError, RedisError, AMQPError, OSError)


class _Publisher(threading.local):
    """This thread's producer on a broker connection of its own, kept from one publish to the next.

    Hand-written rather than Celery's producer pool because of a figure: a connection opened for
    each publish, with its channel and queue declaration, cost 4.6 ms of a web process's CPU,
    against 1.2 ms on a kept one (bench/list_latency.py, key expired before every request).
    Tight timeouts and no retries: a dead or stuck broker costs a request a second or two, and
    then an "unavailable" status.
    """

    def __init__(self) -> None:
        self.producer: Producer | None = None
        self.url = ""

    def send(
        self,
        task: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        task_id: str,
        countdown: float | None = None,
    ) -> None:
        """Publish a task. After a broker restart, the Redis client reconnects by itself; a
        RabbitMQ connection fails once, and the next publish opens a new one."""
        url = current_app.conf.broker_write_url or current_app.conf.broker_url
        if self.producer is None or url != self.url:
            self.close()
            timeouts = PUBLISH_TIMEOUTS[settings.SYNC_BROKER_KIND]
            connection = current_app.connection_for_write(transport_options=timeouts)
            self.producer, self.url = current_app.amqp.Producer(connection, auto_declare=False), url
        try:
            current_app.send_task(
                task,
                args,
                kwargs,
                task_id=task_id,
                countdown=countdown,
                producer=self.producer,
                retry=False,
                # Nobody waits on a reflection's result: do not subscribe to it.
                ignore_result=task == task_names.REFLECT,
            )
        except PUBLISH_ERRORS:
            self.close()  # the next publish starts on a new connection
            raise

    def close(self) -> None:
        if self.producer is None:
            return
        connection = self.producer.connection  # None only for a producer made on no connection
        if connection is not None:
            with contextlib.suppress(*PUBLISH_ERRORS):
                connection.release()
        self.producer = None


_publisher = _Publisher()


def _forget_publisher_after_fork() -> None:
    _publisher.producer = None  # the parent's socket is not this process's to use


os.register_at_fork(after_in_child=_forget_publisher_after_fork)


def publish(
    task: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    task_id: str,
    countdown: float | None = None,
) -> None:
    """Publish one task under the given id, to the queue sync.changes.queues names for it, to run
    after `countdown` seconds; raise one of PUBLISH_ERRORS if the broker fails."""
    _publisher.send(task, args, kwargs, task_id, countdown)
