"""Benchmark the open page, push against poll: DDL to the page showing it, and idle tabs' CPU.

Starts gunicorn (as the Procfile runs it), the push role (uvicorn), a Celery worker and the
listener on a Redis server of its own, with the watch installed. Headless Chromium opens the
tables page; each round creates a table from a second client and times it until the open page
shows it, with the push channel (the default) and without it (the page polls every 2 s).
Then 100 tabs sit idle on the page, and the web and push processes' CPU over 60 s is read from
/proc, push against poll. Poll mode is a second web role with the push channel off
(SYNC_PUSH_URL=off), as pages behind a proxy that drops the stream. Prints JSON.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script
from bench.isolate import isolate

# The ORM beside Playwright's sync API, which runs an event loop in this thread.
isolate("dbsync_bench_push", DJANGO_ALLOW_ASYNC_UNSAFE="true")

import argparse
import json
import os
import random
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from bench.common import connect, ensure_database, free_port, log, machine, server_url, service
from sync.changes import listening, recency, watch
from sync.models import Database, DatabaseGrant, ReflectionRun
from sync.reflection import registry, runs

USER_DATABASE = settings.DATABASES["default"]["NAME"] + "_user"
CHROMIUM = "/usr/bin/chromium"
READER = "bench_push_reader"
TICKS = os.sysconf("SC_CLK_TCK")


def prepare() -> Database:
    """Create the databases, migrate, collect the static files, register, reflect, watch."""
    ensure_database(settings.DATABASES["default"]["NAME"])
    ensure_database(USER_DATABASE)
    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    user = connect(USER_DATABASE)
    with user.cursor() as cursor:
        cursor.execute("DROP SCHEMA IF EXISTS pushed CASCADE; CREATE SCHEMA pushed")
        cursor.execute("CREATE TABLE pushed.orders (id int)")
    user.close()
    Database.objects.exclude(name="bench_push").delete()
    database, _ = registry.register("bench_push", server_url(USER_DATABASE))
    runs.reflect(database.id)
    watch.install(database)
    readers, _ = Group.objects.get_or_create(name=READER)
    DatabaseGrant.objects.get_or_create(database=database, group=readers)
    reader, _ = get_user_model().objects.get_or_create(username=READER)
    reader.set_password(f"{READER}-pw")
    reader.save()
    reader.groups.add(readers)
    return database


def processes(web: int, polled_web: int, push: int) -> dict[str, list[str]]:
    """The roles; two web roles alike but for the push channel: on, and off (pages poll)."""
    python = sys.executable
    gunicorn = [python, "-m", "gunicorn", "project.wsgi", "--workers", "2", "--threads", "12",
                "--log-level", "warning", "--bind"]  # fmt: skip
    return {
        "web": [*gunicorn, f"127.0.0.1:{web}"],
        "polled_web": ["env", "SYNC_PUSH_URL=off", *gunicorn, f"127.0.0.1:{polled_web}"],
        "push": [python, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1",
                 "--port", str(push), "--no-access-log", "--log-level", "warning"],
        "worker": [python, "-m", "celery", "-A", "worker", "worker", "--loglevel", "WARNING",
                   "--concurrency", "2", "--queues", "interactive,bulk"],
        "listener": [python, "manage.py", "listen"],
    }  # fmt: skip


def log_in(context: BrowserContext, base: str) -> None:
    page = context.new_page()
    page.goto(f"{base}/login/")
    page.get_by_label("User name").fill(READER)
    page.get_by_label("Password").fill(f"{READER}-pw")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/$"))
    page.close()


SHOWN = """name => [...document.querySelectorAll('#listing tbody th a')]
                   .some(a => a.textContent === name)"""


def rounds(page: Page, database: Database, count: int, prefix: str) -> dict[str, list[float]]:
    """Create `count` tables; return ms from each DDL, and from its reflection, to shown."""
    ddl = connect(USER_DATABASE, name="dbsync-bench-push-ddl")
    from_ddl, from_reflection = [], []
    try:
        for number in range(count):
            name = f"{prefix}{number:03d}"
            with ddl.cursor() as cursor:
                cursor.execute(f"CREATE TABLE pushed.{name} (id int)")
            started = time.time()
            page.wait_for_function(SHOWN, arg=name, polling="raf", timeout=30_000)
            shown = time.time()
            run = ReflectionRun.objects.filter(database=database).latest("finished_at")
            from_ddl.append((shown - started) * 1000)
            if run.finished_at is not None:
                from_reflection.append((shown - run.finished_at.timestamp()) * 1000)
            # Each change on its own, at a moment unrelated to the poll's period.
            page.wait_for_timeout(500 + random.randint(0, 1500))
    finally:
        ddl.close()
    return {"ddl_to_shown": from_ddl, "reflection_to_shown": from_reflection}


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)

    return {"n": len(ordered), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0)}


def group_cpu_seconds(group: int) -> float:
    """Return the CPU seconds (user and system) of the live processes of a process group."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == group:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def idle_cpu(
    browser: Browser, base: str, url: str, tabs: int, seconds: float, groups: dict[str, int],
    push: bool,
) -> dict[str, Any]:  # fmt: skip
    """Open `tabs` tabs on the page, let them sit, and read each role's CPU over `seconds`."""
    context = browser.new_context()
    log_in(context, base)
    requests: list[str] = []
    pages = []
    for _ in range(tabs):
        page = context.new_page()
        page.goto(url)
        pages.append(page)
    if push:
        for page in pages:
            page.wait_for_function("window.dbsyncPushed === true", timeout=30_000)
    context.on("request", lambda request: requests.append(request.url))
    pages[0].wait_for_timeout(3000)  # the tabs settle
    requests.clear()
    before = {name: group_cpu_seconds(group) for name, group in groups.items()}
    pages[0].wait_for_timeout(seconds * 1000)
    after = {name: group_cpu_seconds(group) for name, group in groups.items()}
    sent = len(requests)
    context.close()
    cpu = {name: round(after[name] - before[name], 2) for name in groups}
    return {"tabs": tabs, "seconds": seconds, "cpu_s": cpu, "requests": sent,
            "web_and_push_cpu_s": round(sum(cpu.values()), 2)}  # fmt: skip


@contextmanager
def roles(web: int, polled_web: int, push: int) -> Iterator[dict[str, int]]:
    """Run the roles; yield the process group of the web roles and the push role."""
    argv = processes(web, polled_web, push)
    with tempfile.TemporaryDirectory(prefix="dbsync-bench-push-") as logs, ExitStack() as stack:
        started = {
            name: stack.enter_context(service(name, argv[name], Path(logs))) for name in argv
        }
        yield {name: started[name].pid for name in ("web", "polled_web", "push")}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    database = prepare()
    web, polled_web, push = free_port(), free_port(), free_port()
    os.environ["SYNC_PUSH_PORT"] = str(push)
    path = f"/databases/{database.id}/tables/?schema={database.schemas.get(name='pushed').id}"
    bases = {"push": f"http://127.0.0.1:{web}", "poll": f"http://127.0.0.1:{polled_web}"}
    report: dict[str, Any] = {}
    with roles(web, polled_web, push) as groups, sync_playwright() as playwright:
        deadline = time.monotonic() + 60
        while listening.watch_mode(database) != "listen" and time.monotonic() < deadline:
            time.sleep(0.2)
        recency.mark_recent(database.id, timezone.now())  # opening the page queues nothing
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for mode in ("push", "poll"):
            context = browser.new_context()
            for _ in range(120):  # the web role may still be starting
                try:
                    log_in(context, bases[mode])
                    break
                except PlaywrightError:  # a refused connection, as Playwright words it
                    time.sleep(0.5)
            page = context.new_page()
            page.goto(bases[mode] + path)
            if mode == "push":
                page.wait_for_function("window.dbsyncPushed === true", timeout=30_000)
            log(f"{mode}: {args.rounds} changes")
            found = rounds(page, database, args.rounds, f"{mode}_")
            report[f"{mode}_latency"] = {key: percentiles(v) for key, v in found.items()}
            log(f"{mode}: {report[f'{mode}_latency']}")
            context.close()
        for mode in ("push", "poll"):
            log(f"{mode}: {args.tabs} idle tabs for {args.seconds} s")
            web_role = "web" if mode == "push" else "polled_web"
            measured = {"web": groups[web_role], "push": groups["push"]}
            report[f"{mode}_idle"] = idle_cpu(
                browser,
                bases[mode],
                bases[mode] + path,
                args.tabs,
                args.seconds,
                measured,
                mode == "push",
            )
            log(f"{mode}: {report[f'{mode}_idle']}")
        browser.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--tabs", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    report: dict[str, Any] = {"benchmark": "push vs poll: DDL to the open page, idle tabs' CPU",
                              "machine": machine()}  # fmt: skip
    report.update(measure(args))
    push, poll = report["push_latency"]["ddl_to_shown"], report["poll_latency"]["ddl_to_shown"]
    after = report["push_latency"]["reflection_to_shown"]
    report["targets"] = {
        "push_p50_from_reflection_under_300_ms": after["p50_ms"] < 300,
        "push_p50_under_poll_p50": push["p50_ms"] < poll["p50_ms"],
        "idle_push_cpu_below_poll": report["push_idle"]["web_and_push_cpu_s"]
        < report["poll_idle"]["web_and_push_cpu_s"],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
