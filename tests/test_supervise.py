"""make run's process manager: every Procfile role under supervisord, restarted when it dies."""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_until

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
