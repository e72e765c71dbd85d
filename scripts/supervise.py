"""Run every Procfile process under supervisord, which restarts any process that exits.

`make run` calls this. The Procfile stays the one list of roles: the supervisord configuration
is generated from it at every start (into .run/), never kept by hand. Each role runs in a shell
of its own, as under honcho or foreman, so a line may set variables (`A=${A:-x} command`);
stopping or restarting a role signals its whole process group.

    python scripts/supervise.py                   # start everything, in the foreground
    python scripts/supervise.py --print-config    # show the generated configuration
    .venv/bin/supervisorctl -c .run/supervisord.conf status|restart web|stop all
"""

import argparse
import os
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROLE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")


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
        # '%' is supervisord's interpolation character: a literal one is written '%%'.
        shell = shlex.quote(command).replace("%", "%%")
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
    config = supervisor_config(read_procfile(options.procfile), ROOT, run_dir, bin_dir)
    if options.print_config:
        print(config)
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    forget_metrics(Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR", run_dir / "metrics")))
    path = run_dir / "supervisord.conf"
    path.write_text(config)
    supervisord = bin_dir / "supervisord"
    # Replaced by supervisord: its signals (Ctrl-C, SIGTERM) stop every role.
    os.execv(supervisord, [str(supervisord), "--nodaemon", "--configuration", str(path)])  # noqa: S606


if __name__ == "__main__":
    main()
