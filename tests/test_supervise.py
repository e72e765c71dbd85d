"""make run's process manager: every Procfile role under supervisord, restarted when it dies."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
SUPERVISE = str(ROOT / "scripts" / "supervise.py")
SUPERVISORCTL = str(Path(sys.executable).with_name("supervisorctl"))


def test_every_procfile_role_is_a_program_with_its_command_intact():
    roles = [line.split(":", 1)[0] for line in (ROOT / "Procfile").read_text().splitlines() if line]

    config = subprocess.run(
        [sys.executable, SUPERVISE, "--print-config"], capture_output=True, text=True, check=True
    ).stdout

    for role in roles:
        assert f"[program:{role}]" in config
    assert "${FLOWER_PORT:-5555}" in config  # the shell expands it, as under honcho
    assert config.count("autorestart=true") == len(roles)


def test_a_line_that_is_not_a_role_stops_the_start_with_its_line_number(tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text("web: sleep 1\nnot a role\n")

    result = subprocess.run(
        [sys.executable, SUPERVISE, "--procfile", str(procfile), "--print-config"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode != 0
    assert result.stderr.strip() == f"{procfile}:2: not a 'role: command' line"


class Supervised:
    def __init__(self, run_dir: Path) -> None:
        self.config = str(run_dir / "supervisord.conf")

    def pids(self) -> dict[str, int]:
        """Return the pid of every role that is RUNNING."""
        status = subprocess.run(
            [SUPERVISORCTL, "-c", self.config, "status"], capture_output=True, text=True
        ).stdout
        pids = {}
        for line in status.splitlines():
            fields = line.split()
            if len(fields) > 3 and fields[1] == "RUNNING":
                pids[fields[0]] = int(fields[3].rstrip(","))
        return pids


@pytest.fixture
def supervised(tmp_path) -> Iterator[Supervised]:
    procfile = tmp_path / "Procfile"
    # fragile runs only where the virtual environment's commands are found, as make run's are.
    procfile.write_text(
        "steady: exec sleep 600\nfragile: command -v supervisord >/dev/null && sleep 600\n"
    )
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, SUPERVISE, "--procfile", str(procfile), "--run-dir", str(run_dir)],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    manager = Supervised(run_dir)
    try:
        wait_until(lambda: len(manager.pids()) == 2, timeout=30, what="both roles to run")
        yield manager
    finally:
        process.send_signal(signal.SIGTERM)  # supervisord stops every role, then exits
        process.wait(timeout=60)


def test_a_killed_role_is_restarted_and_the_others_keep_running(supervised):
    before = supervised.pids()

    os.killpg(before["fragile"], signal.SIGKILL)  # the shell and its sleep, as a crash would

    wait_until(
        lambda: supervised.pids().get("fragile", before["fragile"]) != before["fragile"],
        timeout=30,
        what="the killed role to be restarted",
    )
    assert supervised.pids()["steady"] == before["steady"]


def test_stopping_waits_for_a_role_that_takes_time_to_shut_down(tmp_path):
    stopped = tmp_path / "stopped"
    script = tmp_path / "slow.py"
    script.write_text(
        "import signal, sys, time\n"
        "def stop(*_):\n"
        "    time.sleep(2)  # a worker finishing its task\n"
        f"    open({str(stopped)!r}, 'w').close()\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "time.sleep(600)\n"
    )
    procfile = tmp_path / "Procfile"
    procfile.write_text(f"slow: {sys.executable} {script}\n")  # not exec'd: a shell's child
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, SUPERVISE, "--procfile", str(procfile), "--run-dir", str(run_dir)],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_until(lambda: "slow" in Supervised(run_dir).pids(), timeout=30, what="the role to run")
    time.sleep(0.5)  # its handler installed

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)

    assert stopped.exists()  # supervise ended after the role, not before


def start(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run supervise.py with the Procfile's roles replaced by quick ones of the same names."""
    procfile = tmp_path / "Procfile"
    procfile.write_text("web: exec sleep 600\nflower: exec sleep 600\n")
    command = [sys.executable, SUPERVISE, "--procfile", str(procfile),
               "--run-dir", str(tmp_path / "run")]  # fmt: skip
    return subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("setting", ["SYNC_WEB_PORT", "FLOWER_PORT"])
def test_a_port_in_use_stops_the_start_with_one_line_naming_it_and_its_setting(tmp_path, setting):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        others = {"SYNC_WEB_PORT": str(free_port()), "FLOWER_PORT": str(free_port())}

        result = start(tmp_path, **{**others, setting: str(port)})

    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"port {port} on 127.0.0.1 ({'web' if setting == 'SYNC_WEB_PORT' else 'flower'}) "
        f"is in use: set {setting} to a free port"
    ]
    assert "http://" not in result.stdout  # no address printed that leads elsewhere
    assert not (tmp_path / "run" / "supervisord.conf").exists()


def test_a_port_setting_that_is_not_a_port_stops_the_start_naming_it(tmp_path):
    result = start(tmp_path, SYNC_WEB_PORT="80a")

    assert result.returncode != 0
    assert "SYNC_WEB_PORT must be a port number" in result.stderr


def test_the_printed_addresses_and_the_procfile_use_the_port_settings(tmp_path):
    web, push, flower = free_port(), free_port(), free_port()
    procfile = tmp_path / "Procfile"
    procfile.write_text("web: exec sleep 600\npush: exec sleep 600\nflower: exec sleep 600\n")
    command = [sys.executable, SUPERVISE, "--procfile", str(procfile),
               "--run-dir", str(tmp_path / "run")]  # fmt: skip
    env = {**os.environ, "SYNC_WEB_PORT": str(web), "SYNC_PUSH_PORT": str(push),
           "FLOWER_PORT": str(flower)}  # fmt: skip
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        first = process.stdout.readline() if process.stdout else ""
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)

    assert f"pages http://127.0.0.1:{web}/" in first
    assert f"push http://127.0.0.1:{push}/push/" in first
    assert f"Flower http://127.0.0.1:{flower}/" in first
    roles = (ROOT / "Procfile").read_text()
    assert "--bind 127.0.0.1:${SYNC_WEB_PORT:-8000}" in roles
    assert "--port=${FLOWER_PORT:-5555}" in roles
    assert "--port ${SYNC_PUSH_PORT:-8001}" in roles
