"""Generate, once, the secrets `make run` needs and the environment leaves unset.

Writes them to a make include file (git-ignored, mode 0600) that later runs keep using: the
database URLs stored encrypted need the same key next time. Standard library only: it runs
before the virtual environment exists. Says on standard error which secrets come from it.
"""

import base64
import os
import secrets
import sys
from pathlib import Path

NAMES = ("SECRET_KEY", "SYNC_SECRET_KEYS", "FLOWER_BASIC_AUTH")


def generate(name: str) -> str:
    if name == "SYNC_SECRET_KEYS":
        return base64.urlsafe_b64encode(os.urandom(32)).decode()  # a Fernet key
    if name == "FLOWER_BASIC_AUTH":
        return f"flower:{secrets.token_urlsafe(18)}"
    return secrets.token_urlsafe(50)


def read(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, sep, value = line.partition(" ?= ")
            if sep and name in NAMES:
                values[name] = value.strip()
    return values


def main(path: Path) -> None:
    values = read(path)
    generated = [name for name in NAMES if name not in values]
    values |= {name: generate(name) for name in generated}
    if generated:
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"{name} ?= {values[name]}" for name in NAMES]
        path.touch(mode=0o600)
        path.write_text("\n".join([*lines, f"export {' '.join(NAMES)}", ""]))
    unset = [name for name in NAMES if not os.environ.get(name)]
    if unset:
        state = "generated now" if generated else "generated before; keep the file"
        print(f"dbsync: {', '.join(unset)} unset: using the local ones in {path} ({state})",
              file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]))
