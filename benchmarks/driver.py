"""The enqueueing side of each benchmark: ``python -m benchmarks.driver COMMAND``, run by
the harness inside the benchmark project (its environment picks the broker and database).

Each command prints one JSON object: the harness reads it from the last line.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import django

TASKS = "benchmarks.project.tasks"
FUNCS: dict[str, tuple[str, Callable[[int], tuple[Any, ...]]]] = {
    "trivial": (f"{TASKS}.trivial", lambda i: ()),
    "write_row": (f"{TASKS}.write_row", lambda i: (i,)),
}
POLL_SECONDS = 0.02


def reset() -> dict[str, Any]:
    """An empty database (results, django-q's queue, receipts, rows) and an empty broker."""
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django_q.brokers import get_broker

    call_command("migrate", verbosity=0)
    tables = set(connection.introspection.table_names())
    wanted = [
        "django_q_task",
        "django_q_ormq",
        "django_q_cloudtasks_receipt",
        "bench_row",
    ]
    with connection.cursor() as cursor:
        for table in wanted:
            if table in tables:
                cursor.execute(f"DELETE FROM {table}")
    if settings.BROKER != "cloudtasks":  # a Cloud Tasks queue empties as its tasks run
        get_broker().purge_queue()
    return {"reset": True}


def results_saved() -> int:
    from django_q.models import Task

    return int(Task.objects.count())


def wait_for_results(count: int, timeout: float) -> float:
    """Until ``count`` result rows exist; returns the time.time() they were seen."""
    deadline = time.monotonic() + timeout
    while True:
        if results_saved() >= count:
            return time.time()
        if time.monotonic() > deadline:
            raise TimeoutError(f"Only {results_saved()} of {count} results after {timeout:g} s")
        time.sleep(POLL_SECONDS)


def enqueue(func: str, number: int, **options: Any) -> str:
    from django_q.tasks import async_task

    path, args = FUNCS[func]
    return str(async_task(path, *args(number), **options))


def warm_up(func: str, timeout: float) -> int:
    """One task enqueued and saved first: this process's first enqueue pays for imports
    and connections, which a long-running web process pays once. Returns the results saved."""
    saved = results_saved() + 1
    enqueue(func, -1)
    wait_for_results(saved, timeout)
    return saved


def cpu(func: str, count: int, roots: list[int], timeout: float) -> dict[str, Any]:
    """CPU per task: this process's while it enqueues, the servers' until every result is saved.

    ``roots`` are process trees whose CPU is counted, each on its own: the executing side
    first, then (for Cloud Tasks) the emulator.
    """
    from benchmarks.processes import usage

    warm = warm_up(func, timeout)
    before = [usage(root).cpu_seconds for root in roots]
    started_cpu, started = time.process_time(), time.perf_counter()
    for number in range(count):
        enqueue(func, number)
    enqueue_cpu = time.process_time() - started_cpu
    enqueued = time.perf_counter() - started
    wait_for_results(warm + count, timeout)
    elapsed = time.perf_counter() - started
    after = [usage(root).cpu_seconds for root in roots]
    return {
        "tasks": count,
        "enqueue_cpu_ms": 1000 * enqueue_cpu / count,
        "enqueue_wall_ms": 1000 * enqueued / count,
        "tree_cpu_ms": [1000 * (a - b) / count for a, b in zip(after, before, strict=True)],
        "seconds": elapsed,
    }


def latency(func: str, count: int, work: Path, timeout: float) -> dict[str, Any]:
    """From async_task() to the result row saved, one task at a time, at random moments.

    The hook ``saved`` stamps the save in whatever process made it; the machine's clock is
    one for all of them.
    """
    warm_up(func, timeout)
    saved_log = work / "saved.log"
    saved_log.unlink(missing_ok=True)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    with saved_log.open("a+") as log:
        for number in range(count):
            time.sleep(random.uniform(0, 0.05))  # no lock-step with a poller's period
            before = time.time()
            task_id = enqueue(func, number, hook=f"{TASKS}.saved")
            sent[task_id] = before
            deadline = time.monotonic() + timeout
            while task_id not in seen:
                for line in log.readlines():
                    saved_id, stamp = line.split()
                    seen[saved_id] = float(stamp)
                if task_id not in seen:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"Task {task_id} was not saved in {timeout:g} s")
                    time.sleep(0.002)
    latencies = sorted(1000 * (seen[task_id] - sent[task_id]) for task_id in sent)
    return {"tasks": count, "latencies_ms": latencies}


def throughput(func: str, count: int, threads: int, timeout: float) -> dict[str, Any]:
    """``count`` tasks enqueued from ``threads`` threads, until every result is saved."""
    warm = warm_up(func, timeout)
    started = time.time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda number: enqueue(func, number), range(count)))
    enqueued = time.time()
    done = wait_for_results(warm + count, timeout)
    return {
        "tasks": count,
        "threads": threads,
        "enqueue_seconds": enqueued - started,
        "seconds": done - started,
        "tasks_per_second": count / (done - started),
    }


def ceiling(count: int, threads: int, delivered: Path, timeout: float) -> dict[str, Any]:
    """The emulator alone: ``count`` tasks to an endpoint that answers at once (target.py,
    which writes a line to ``delivered`` per request), from the first enqueue to the last
    delivery answered."""

    def deliveries() -> list[str]:
        return delivered.read_text().splitlines() if delivered.exists() else []

    def wait_for_deliveries(number: int) -> float:
        deadline = time.monotonic() + timeout
        while len(lines := deliveries()) < number:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(lines)} of {number} deliveries in {timeout:g} s")
            time.sleep(POLL_SECONDS)
        return float(lines[number - 1])

    enqueue("trivial", -1)  # this process's first enqueue makes the client: not counted
    wait_for_deliveries(1)
    started = time.time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda number: enqueue("trivial", number), range(count)))
    last = wait_for_deliveries(1 + count)
    return {"tasks": count, "seconds": last - started, "tasks_per_second": count / (last - started)}


def enqueue_one(func: str, args: list[str]) -> dict[str, Any]:
    from django_q.tasks import async_task

    return {"task": str(async_task(f"{TASKS}.{func}", *args))}


def overhead(count: int, block: int) -> dict[str, Any]:
    """The receiver view against the bare view (project/bare.py), in this process through
    Django's test client: the same signed packages, the same function, the same row.

    The receiver checks a real ID token from the emulator's key, as in production. Blocks
    of each alternate, so that the machine's changing load falls on both alike.
    """
    from django.test import Client
    from django.utils import timezone
    from django_q.humanhash import humanize
    from django_q.signing import SignedPackage

    from django_q_cloudtasks.conf import queue_settings
    from django_q_cloudtasks.wire import PACKAGE_CONTENT_TYPE

    queue = queue_settings()
    emulator = _in_process_emulator()
    token = emulator.identity.token(queue.service_account_email or "", queue.audience)
    client = Client(HTTP_HOST="127.0.0.1")  # one of ALLOWED_HOSTS

    def package() -> bytes:
        task_id = uuid.uuid4().hex
        task = {
            "id": task_id,
            "name": humanize(task_id),
            "func": FUNCS["trivial"][0],
            "args": (),
            "kwargs": {},
            "started": timezone.now(),
        }
        return str(SignedPackage.dumps(task)).encode()

    def receiver(body: bytes) -> Any:
        return client.post(
            "/_tasks/",
            body,
            content_type=PACKAGE_CONTENT_TYPE,
            HTTP_AUTHORIZATION=f"Bearer {token}",
            HTTP_X_CLOUDTASKS_TASKRETRYCOUNT="0",
        )

    def bare(body: bytes) -> Any:
        return client.post("/bare/", body, content_type=PACKAGE_CONTENT_TYPE)

    views = {"receiver": receiver, "bare": bare}
    for view in views.values():  # warm: imports, connections, certificates
        for _ in range(20):
            answer = view(package())
            assert answer.status_code == 200, answer.content
    per_request: dict[str, list[float]] = {name: [] for name in views}
    per_request_cpu: dict[str, list[float]] = {name: [] for name in views}
    for _ in range(count // block):
        for name, view in views.items():
            bodies = [package() for _ in range(block)]
            cpu, wall = time.process_time(), time.perf_counter()
            for body in bodies:
                view(body)
            per_request[name].append(1000 * (time.perf_counter() - wall) / block)
            per_request_cpu[name].append(1000 * (time.process_time() - cpu) / block)
    emulator.stop()
    median = {name: statistics.median(times) for name, times in per_request.items()}
    median_cpu = {name: statistics.median(times) for name, times in per_request_cpu.items()}
    return {
        "requests": count,
        "ms": median,
        "cpu_ms": median_cpu,
        "ratio": median["receiver"] / median["bare"],
        "cpu_ratio": median_cpu["receiver"] / median_cpu["bare"],
    }


def profile(count: int, out: Path) -> dict[str, Any]:
    """pyinstrument's profile of ``count`` receiver deliveries, as text."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    result = overhead(count, block=count // 2)
    profiler.stop()
    out.write_text(profiler.output_text(unicode=True, color=False, show_all=False))
    return result


def _in_process_emulator() -> Any:
    """An emulator in this process for its signing key and certificates; the settings'
    emulator mode (CLOUD_TASKS_EMULATOR_HOST) points the receiver at them."""
    import os

    from django_q_cloudtasks.emulator import Emulator

    host, port = os.environ["CLOUD_TASKS_EMULATOR_HOST"].split(":")
    return Emulator(host, int(port)).start()


def main() -> None:
    django.setup()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.driver")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("reset")
    for name in ("cpu", "latency", "throughput"):
        command = commands.add_parser(name)
        command.add_argument("--func", choices=sorted(FUNCS), default="trivial")
        command.add_argument("--count", type=int, required=True)
        command.add_argument("--timeout", type=float, default=600)
        if name == "cpu":
            command.add_argument("--roots", type=int, nargs="+", required=True)
        if name == "latency":
            command.add_argument("--work", type=Path, required=True)
        if name == "throughput":
            command.add_argument("--threads", type=int, default=8)
    top = commands.add_parser("ceiling")
    top.add_argument("--count", type=int, required=True)
    top.add_argument("--threads", type=int, default=8)
    top.add_argument("--delivered", type=Path, required=True)
    top.add_argument("--timeout", type=float, default=600)
    one = commands.add_parser("enqueue-one")
    one.add_argument("func")
    one.add_argument("args", nargs="*")
    over = commands.add_parser("overhead")
    over.add_argument("--count", type=int, default=1000)
    over.add_argument("--block", type=int, default=50)
    prof = commands.add_parser("profile")
    prof.add_argument("--count", type=int, default=1000)
    prof.add_argument("--out", type=Path, required=True)
    options = parser.parse_args()

    if options.command == "reset":
        answer = reset()
    elif options.command == "cpu":
        answer = cpu(options.func, options.count, options.roots, options.timeout)
    elif options.command == "latency":
        answer = latency(options.func, options.count, options.work, options.timeout)
    elif options.command == "throughput":
        answer = throughput(options.func, options.count, options.threads, options.timeout)
    elif options.command == "ceiling":
        answer = ceiling(options.count, options.threads, options.delivered, options.timeout)
    elif options.command == "enqueue-one":
        answer = enqueue_one(options.func, options.args)
    elif options.command == "overhead":
        answer = overhead(options.count, options.block)
    else:
        answer = profile(options.count, options.out)
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
