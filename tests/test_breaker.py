"""The circuit breaker, against a real socket that accepts connections and never answers."""

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import redis
from redis.exceptions import RedisError

from sync.breaker import REDIS_BREAKER, Breaker, BreakerOpen
from tests.helpers import client_for, make_user, wait_until


@dataclass
class HangingServer:
    """A TCP server that accepts every connection and never sends a byte (a hung Redis)."""

    port: int
    accepted: list[socket.socket] = field(default_factory=list)


@pytest.fixture
def hanging() -> Iterator[HangingServer]:
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    server = HangingServer(listener.getsockname()[1])

    def accept() -> None:
        while True:
            try:
                server.accepted.append(listener.accept()[0])
            except OSError:
                return  # the listener was closed

    threading.Thread(target=accept, daemon=True).start()
    yield server
    listener.close()
    for connection in server.accepted:
        connection.close()


class Clock:
    """A clock the test moves by hand: the cooldown passes without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def client_of(server: HangingServer) -> redis.Redis:
    return redis.Redis(port=server.port, socket_connect_timeout=0.3, socket_timeout=0.3)


def get(breaker: Breaker, client: redis.Redis) -> object:
    with breaker:
        return client.get("key")


def test_after_a_hung_call_the_next_calls_fail_at_once_without_connecting(hanging):
    breaker, client = Breaker("redis", cooldown=5, clock=Clock()), client_of(hanging)

    with pytest.raises(redis.TimeoutError):
        get(breaker, client)
    wait_until(lambda: len(hanging.accepted) == 1, what="the first connection")
    for _ in range(5):
        with pytest.raises(BreakerOpen):
            get(breaker, client)

    assert breaker.is_open
    assert len(hanging.accepted) == 1  # nobody asked the hung server again


def test_after_the_cooldown_one_probe_goes_through_and_a_failed_one_opens_it_again(hanging):
    clock = Clock()
    breaker, client = Breaker("redis", cooldown=5, clock=clock), client_of(hanging)
    with pytest.raises(redis.TimeoutError):
        get(breaker, client)

    clock.now += 5
    assert not breaker.is_open
    with pytest.raises(redis.TimeoutError):
        get(breaker, client)  # the probe: asks the server again, which still hangs

    wait_until(lambda: len(hanging.accepted) == 2, what="the probe's connection")
    assert breaker.is_open
    with pytest.raises(BreakerOpen):
        get(breaker, client)


def test_a_successful_probe_closes_the_breaker(hanging, settings):
    clock = Clock()
    breaker = Breaker("redis", cooldown=5, clock=clock)
    with pytest.raises(redis.TimeoutError):
        get(breaker, client_of(hanging))
    clock.now += 5

    assert get(breaker, redis.Redis.from_url(settings.SYNC_STATE_REDIS_URL)) is None

    assert not breaker.is_open
    get(breaker, redis.Redis.from_url(settings.SYNC_STATE_REDIS_URL))


def test_while_a_probe_is_under_way_the_others_fail_at_once():
    clock = Clock()
    breaker = Breaker("redis", cooldown=5, clock=clock)
    with pytest.raises(ConnectionError), breaker:
        raise ConnectionError("refused")  # an OSError: opens it
    clock.now += 5

    probe = breaker.__enter__()
    with pytest.raises(BreakerOpen), breaker:
        pass
    probe.__exit__(None, None, None)

    assert not breaker.is_open


def test_an_error_that_is_not_the_servers_leaves_it_closed():
    breaker = Breaker("redis", cooldown=5, clock=Clock())
    with pytest.raises(ValueError, match="a bug"), breaker:
        raise ValueError("a bug")
    assert not breaker.is_open


def test_breaker_open_is_a_redis_error():
    assert issubclass(BreakerOpen, RedisError)  # callers' `except RedisError` serve it


@pytest.mark.django_db
def test_lists_stop_asking_a_hung_redis_after_the_first_failure(
    hanging, registered, settings, monkeypatch
):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{hanging.port}/0",
            "OPTIONS": {"socket_connect_timeout": 0.3, "socket_timeout": 0.3},
        }
    }
    monkeypatch.setattr(REDIS_BREAKER, "cooldown", 3600)  # no probe in this test
    client = client_for(make_user("reader"))

    statuses = []
    for _ in range(5):
        response = client.get(f"/api/v1/tables/?database={registered.id}")
        assert response.status_code == 200
        statuses.append(response["X-Reflection-Status"])
        if len(statuses) == 1:
            wait_until(lambda: len(hanging.accepted) == 1, what="the first list's connection")

    assert statuses == ["unavailable"] * 5
    assert len(hanging.accepted) == 1  # the first list asked; the four after it did not
