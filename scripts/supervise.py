"""Run every Procfile process under supervisord, which restarts any process that exits.

`make run` calls this. The Procfile stays the one list of roles: the supervisord configuration
is generated from it at every start (into .run/), never kept by hand. Each role runs in a shell
of its own, as under honcho or foreman, so a line may set variables (`A=${A:-x} command`);
stopping or restarting a role signals its whole process group, and waits until its command
has ended.

    python scripts/supervise.py                   # start everything, in the foreground
    python scripts/supervise.py --print-config    # show the generated configuration
    .venv/bin/supervisorctl -c .run/supervisord.conf status|restart web|stop all
"""

import argparse
import os
import re
import shlex
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROLE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
# The roles that listen, the setting that names each one's port (the Procfile reads it too),
# and its default.
PORTS = {
    "web": ("SYNC_WEB_PORT", 8000),
    "push": ("SYNC_PUSH_PORT", 8001),
    "flower": ("FLOWER_PORT", 5555),
}


def port_setting(name: str, default: int) -> int:
    """Return the port a setting names; stop the start, naming it, if it is not a port."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 65535):
        raise SystemExit(f"{name} must be a port number from 1 to 65535, got {raw[:40]!r}")
    return int(raw)


def ports(roles: dict[str, str]) -> dict[str, int]:
    """Return the port of each listening role of the Procfile, by role."""
    return {role: port_setting(*PORTS[role]) for role in PORTS if role in roles}


def check_ports(listening: dict[str, int]) -> None:
    """Stop the start with one line if a role's port is taken: the role would restart over
    and over, and the printed address lead to whatever holds the port."""
    for role, port in listening.items():
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is free
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                setting = PORTS[role][0]
                raise SystemExit(
                    f"port {port} on 127.0.0.1 ({role}) is in use: set {setting} to a free port"
                ) from None


def addresses(listening: dict[str, int]) -> str:
    """Return the line that tells where to find the service."""
    web, flower = listening.get("web"), listening.get("flower")
    parts = []
    if web is not None:
        base = f"http://127.0.0.1:{web}"
        parts += [f"pages {base}/", f"API {base}/api/v1/", f"admin {base}/admin/"]
    if listening.get("push") is not None:
        parts.append(f"push http://127.0.0.1:{listening['push']}/push/")
    if flower is not None:
        parts.append(f"Flower http://127.0.0.1:{flower}/")
    return "dbsync: " + "  ".join(parts)


def read_procfile(path: Path) -> dict[str, str]:
    """Return the roles of a Procfile, name -> command line, in the file's order."""
    roles: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = ROLE.match(line)
        if match is None:
            raise SystemExit(f"{path}:{number}: not a 'role: command' line")
        roles[match.group(1)] = match.group(2).strip()
    if not roles:
        raise SystemExit(f"{path}: no roles")
    return roles


def supervisor_config(roles: dict[str, str], root: Path, run_dir: Path, bin_dir: Path) -> str:
    """Return a supervisord configuration that runs and restarts every role.

    bin_dir (the virtual environment's) comes first on each role's PATH, as under `make run`.
    """
    socket = run_dir / "supervisor.sock"
    sections = [
        "[supervisord]\nnodaemon=true\nlogfile=/dev/null\nlogfile_maxbytes=0\n"
        f"pidfile={run_dir / 'supervisord.pid'}\n",
        f"[unix_http_server]\nfile={socket}\n",
        f"[supervisorctl]\nserverurl=unix://{socket}\n",
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n",
    ]
    for name, command in roles.items():
        # The shell waits out its command's shutdown: a TERM it gets (the group's) runs its trap
        # only once the command has ended, so supervisord, which watches the shell, waits for
        # the command too (up to stopwaitsecs, then SIGKILL to the group). Without it the shell
        # died at once, supervisord exited, and a Celery worker shutting down was left behind.
        # '%' is supervisord's interpolation character: a literal one is written '%%'.
        shell = shlex.quote(f"trap 'exit 143' TERM; {command}").replace("%", "%%")
        sections.append(
            f"[program:{name}]\n"
            f"command=/bin/sh -c {shell}\n"
            f"directory={root}\n"
            f'environment=PATH="{bin_dir}:%(ENV_PATH)s"\n'
            # Restarted whenever it exits; started again if it dies within its first second.
            "autorestart=true\nstartsecs=1\nstartretries=100\n"
            # Signals reach the role's whole group: the shell and what it started.
            "stopasgroup=true\nkillasgroup=true\nstopwaitsecs=20\n"
            "stdout_logfile=/dev/stdout\nstdout_logfile_maxbytes=0\nredirect_stderr=true\n"
        )
    return "\n".join(sections)


def forget_metrics(directory: Path) -> None:
    """Empty the metrics the processes of a former start wrote: their pids are gone."""
    if directory.is_dir():
        for stale in directory.glob("*.db"):
            stale.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procfile", type=Path, default=ROOT / "Procfile")
    parser.add_argument("--run-dir", type=Path, default=ROOT / ".run")
    parser.add_argument("--print-config", action="store_true")
    options = parser.parse_args()
    run_dir = options.run_dir.resolve()
    bin_dir = Path(sys.executable).parent
    roles = read_procfile(options.procfile)
    config = supervisor_config(roles, ROOT, run_dir, bin_dir)
    if options.print_config:
        print(config)
        return
    listening = ports(roles)
    check_ports(listening)
    if listening:
        print(addresses(listening), flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    forget_metrics(Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR", run_dir / "metrics")))
    path = run_dir / "supervisord.conf"
    path.write_text(config)
    supervisord = bin_dir / "supervisord"
    # Replaced by supervisord: its signals (Ctrl-C, SIGTERM) stop every role.
    os.execv(supervisord, [str(supervisord), "--nodaemon", "--configuration", str(path)])  # noqa: S606


if __name__ == "__main__":
    main()
