"""scripts/local_secrets.py, as `make run` calls it: secrets generated once, kept, announced."""

import os
import stat
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "local_secrets.py"
NAMES = ("SECRET_KEY", "SYNC_SECRET_KEYS", "FLOWER_BASIC_AUTH")


def run(path: Path, **env: str) -> str:
    environment = {key: value for key, value in os.environ.items() if key not in NAMES}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(path)],
        env=environment | env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stderr


def values(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split(" ?= ", 1) for line in lines if " ?= " in line)


def test_secrets_are_generated_once_private_and_kept(tmp_path):
    path = tmp_path / ".run" / "secrets.mk"

    first = run(path)
    assert "SECRET_KEY, SYNC_SECRET_KEYS, FLOWER_BASIC_AUTH unset" in first
    assert "generated now" in first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    generated = values(path)
    Fernet(generated["SYNC_SECRET_KEYS"].encode())  # a valid key
    assert generated["FLOWER_BASIC_AUTH"].startswith("flower:")

    second = run(path)
    assert "generated before; keep the file" in second
    assert values(path) == generated


def test_a_secret_set_in_the_environment_is_not_announced(tmp_path):
    path = tmp_path / "secrets.mk"
    said = run(path, SYNC_SECRET_KEYS=Fernet.generate_key().decode())
    assert "SECRET_KEY, FLOWER_BASIC_AUTH unset" in said
    # The file still holds one, used only if the environment stops setting it (make's ?=).
    assert "SYNC_SECRET_KEYS" in values(path)
    assert "export SECRET_KEY SYNC_SECRET_KEYS FLOWER_BASIC_AUTH" in path.read_text()
