"""A RabbitMQ node of one's own, for the faults a restart injects (benchmarks and tests).

The machine's RabbitMQ is shared: a fault is injected into a node started here instead, on a
free port, its data in a directory of its own, so that it restarts with its durable queues and
persistent messages as a real broker does.
"""

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # Debian's, without its su wrapper


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class RabbitNode:
    """A RabbitMQ node on 127.0.0.1:port with one virtual host, open to guest."""

    def __init__(self, directory: Path, vhost: str) -> None:
        self.port, self.directory = free_port(), directory
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}"
        (directory / "enabled_plugins").write_text("[].\n")
        (directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
            f"default_vhost = {vhost}\n"
        )
        self.process = self.start()

    def start(self) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "HOME": str(self.directory),
            "RABBITMQ_NODENAME": f"dbsync-{self.port}@localhost",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_CONFIG_FILE": str(self.directory / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
        }
        with (self.directory / "server.log").open("ab") as log:
            process = subprocess.Popen(
                [RABBITMQ_SERVER], env=env, stdout=log, stderr=log, start_new_session=True
            )
        until(lambda: port_answers(self.port), "RabbitMQ to start", 120)
        return process

    def stop(self) -> None:
        """Stop the node as its service would (SIGTERM): it writes its queues and exits."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)
        until(lambda: not port_answers(self.port), "RabbitMQ to stop", 30)

    def restart(self) -> None:
        self.stop()
        self.process = self.start()


def until(ready: Callable[[], bool], what: str, seconds: float) -> None:
    """Poll until ready; raise after `seconds`."""
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {seconds:.0f} s")
        time.sleep(0.1)
