"""CloudTasksBroker with its receiver against django-q2's qcluster (ORM and Redis brokers),
on one machine, in one run: ``python -m benchmarks`` (``nox -s bench``).

Every system runs the same project (``project/``), with the same number of worker
processes: gunicorn's sync workers for the receiver, qcluster's workers for django-q.
The Cloud Tasks emulator stands in for Google's service; its CPU is reported apart, as
Google's side, and its own ceiling is measured so that the results say whether it held
the receiver back. What is measured, for each database:

1. CPU time per task: the enqueueing process while it enqueues; the executing processes
   (gunicorn, or every qcluster process) from the first enqueue to the last result saved.
2. Latency, one task at a time: async_task() to the result row saved (a django-q hook
   stamps the save).
3. Throughput: tasks enqueued from 8 threads, until every result is saved.
4. Idle cost over a minute with nothing to do: processes, memory and CPU.
5. Cold start: a fresh process's first task; and what the receiver adds to the imports.
6. The receiver view against a bare view doing the least a task needs (``project/bare.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.support.ports import free_port, free_port_pair

from . import charts, processes, report
from .processes import ROOT, environment, running, usage

SYSTEMS = ("cloudtasks", "orm", "redis")
DATABASES = ("postgres", "sqlite")
PG_NAME = "djq_bench"
PG_CONNECT = {
    "host": "127.0.0.1",
    "user": os.environ.get("PGUSER", "postgres"),
    "connect_timeout": 5,
}
REDIS_URL = "redis://127.0.0.1:6379"
QUEUE = "projects/bench-project/locations/europe-west1/queues/bench"
RESULTS = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Sizes:
    cpu: int = 1000  # tasks per CPU run, of each task
    latency: int = 200
    throughput: int = 5000
    idle_seconds: float = 60
    cold_starts: int = 5
    imports: int = 10
    overhead: int = 2000  # requests to each view
    ceiling: int = 5000
    warmup: int = 50


QUICK = Sizes(
    cpu=40,
    latency=15,
    throughput=150,
    idle_seconds=3,
    cold_starts=1,
    imports=2,
    overhead=100,
    ceiling=150,
    warmup=10,
)


class Run:
    """One benchmark run: its sizes, where its processes log, what it found."""

    def __init__(self, sizes: Sizes, work: Path, workers: int) -> None:
        self.sizes = sizes
        self.work = work
        self.workers = workers
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def env(self, system: str, database: str, **extra: str) -> dict[str, str]:
        return environment(
            system,
            database,
            self.work,
            BENCH_WORKERS=str(self.workers),
            BENCH_PG_NAME=PG_NAME,
            **extra,
        )

    def drive(self, env: dict[str, str], *args: str) -> dict[str, Any]:
        """A driver command in the project (driver.py); its JSON answer."""
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.driver", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"driver {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return answer

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    # The systems, running and ready.

    def receiver_stack(self, database: str, *, workers: int | None = None) -> Any:
        """The emulator and gunicorn; returns the servers and the project's environment."""
        emulator_port, server_port = free_port_pair(), free_port()
        env = self.env(
            "cloudtasks",
            database,
            CLOUD_TASKS_EMULATOR_HOST=f"127.0.0.1:{emulator_port}",
            BENCH_RECEIVER_URL=f"http://127.0.0.1:{server_port}/_tasks/",
        )
        emulator = processes.emulator(env, emulator_port, self.log(f"emulator-{database}"))
        server = processes.gunicorn(
            env, server_port, workers or self.workers, self.log(f"gunicorn-{database}")
        )
        processes.wait_for_port(server_port, server.process)
        return (server, emulator), env

    def cluster(self, system: str, database: str) -> Any:
        env = self.env(system, database)
        return (processes.qcluster(env, self.log(f"qcluster-{system}-{database}")),), env

    def system(self, system: str, database: str) -> Any:
        if system == "cloudtasks":
            return self.receiver_stack(database)
        return self.cluster(system, database)

    # The measurements.

    def measure_system(self, system: str, database: str) -> dict[str, Any]:
        """CPU per task (both tasks), latency and throughput of one system on one database."""
        self.drive(self.env(system, database), "reset")
        servers, env = self.system(system, database)
        roots = [str(server.pid) for server in servers]
        with running(*servers):
            self.drive(env, "cpu", "--count", str(self.sizes.warmup), "--roots", *roots)
            found: dict[str, Any] = {}
            for func in ("trivial", "write_row"):
                self.drive(env, "reset")
                found[f"cpu_{func}"] = self.drive(
                    env, "cpu", "--func", func, "--count", str(self.sizes.cpu), "--roots", *roots
                )
            self.drive(env, "reset")
            found["latency"] = self.drive(
                env, "latency", "--count", str(self.sizes.latency), "--work", str(self.work)
            )
            self.drive(env, "reset")
            found["throughput"] = self.drive(
                env, "throughput", "--count", str(self.sizes.throughput)
            )
        return found

    def measure_idle(self) -> dict[str, Any]:
        """All at once, idle together: qcluster with each broker, and a receiver left
        running (on Cloud Run it scales to zero: no process at all)."""
        (orm,), _ = self.cluster("orm", "postgres")
        (redis,), _ = self.cluster("redis", "postgres")
        port = free_port()
        receiver = processes.gunicorn(
            self.env("cloudtasks", "postgres"), port, self.workers, self.log("gunicorn-idle")
        )
        servers = {"orm": orm, "redis": redis, "receiver_kept_running": receiver}
        with running(*servers.values()):
            processes.wait_for_port(port, receiver.process)
            time.sleep(5)  # every process up and settled
            before = {name: usage(server.pid) for name, server in servers.items()}
            time.sleep(self.sizes.idle_seconds)
            after = {name: usage(server.pid) for name, server in servers.items()}
        return {
            "seconds": self.sizes.idle_seconds,
            **{
                name: {
                    "processes": after[name].processes,
                    "rss_mib": after[name].rss_bytes / 2**20,
                    "cpu_seconds": after[name].cpu_seconds - before[name].cpu_seconds,
                }
                for name in servers
            },
        }

    def measure_cold_start(self) -> dict[str, Any]:
        """From a fresh process's start to its first task run, the task waiting for it:
        gunicorn with one worker (its first request, as Cloud Run holds it until the port
        opens), and qcluster with the ORM broker."""
        from django_q_cloudtasks.gcp.client import tasks_client

        found: dict[str, list[float]] = {"receiver": [], "receiver_listening": [], "qcluster": []}
        emulator_port, server_port = free_port_pair(), free_port()
        env = self.env(
            "cloudtasks",
            "postgres",
            CLOUD_TASKS_EMULATOR_HOST=f"127.0.0.1:{emulator_port}",
            BENCH_RECEIVER_URL=f"http://127.0.0.1:{server_port}/_tasks/",
        )
        with running(processes.emulator(env, emulator_port, self.log("emulator-cold"))):
            client = tasks_client(f"127.0.0.1:{emulator_port}")
            for attempt in range(self.sizes.cold_starts):
                name = f"receiver-{attempt}"
                client.pause_queue(name=QUEUE)
                self.drive(env, "enqueue-one", "stamp", name)
                server = processes.gunicorn(env, server_port, 1, self.log("gunicorn-cold"))
                with running(server):
                    processes.wait_for_port(server_port, server.process)
                    listening = time.time()
                    client.resume_queue(name=QUEUE)
                    ran = self._ran(name)
                found["receiver"].append(ran - server.started)
                found["receiver_listening"].append(listening - server.started)
        orm = self.env("orm", "postgres")
        for attempt in range(self.sizes.cold_starts):
            name = f"qcluster-{attempt}"
            self.drive(orm, "reset")
            self.drive(orm, "enqueue-one", "stamp", name)
            cluster = processes.qcluster(orm, self.log("qcluster-cold"))
            with running(cluster):
                ran = self._ran(name)
            found["qcluster"].append(ran - cluster.started)
        return {name: statistics.median(times) for name, times in found.items()} | {
            "runs": self.sizes.cold_starts,
            "receiver_runs": len(found["receiver"]),
        }

    def _ran(self, name: str, timeout: float = 60) -> float:
        stamp = self.work / f"ran-{name}.log"
        deadline = time.monotonic() + timeout
        while not stamp.exists() or not stamp.read_text().strip():
            if time.monotonic() > deadline:
                raise TimeoutError(f"Task {name} did not run within {timeout:g} s")
            time.sleep(0.002)
        return float(stamp.read_text().split()[-1])

    def measure_imports(self) -> dict[str, Any]:
        """Seconds for a fresh interpreter to set up Django and load the URLconf: the project
        with django-q alone, and with the receiver mounted."""
        script = (
            "import json, sys, time\n"
            "started = time.perf_counter()\n"
            "import django\n"
            "django.setup()\n"
            "from django.urls import resolve\n"
            "resolve('/bare/')\n"
            "print(json.dumps({'seconds': time.perf_counter() - started,\n"
            "                  'tasks_v2': 'google.cloud.tasks_v2' in sys.modules}))\n"
        )
        found = {}
        for name, system in (("django_q_alone", "orm"), ("with_receiver", "cloudtasks")):
            runs = []
            for _ in range(self.sizes.imports):
                done = subprocess.run(
                    [sys.executable, "-c", script],
                    env=self.env(system, "postgres"),
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                runs.append(json.loads(done.stdout))
            found[name] = {
                "seconds": statistics.median(run["seconds"] for run in runs),
                "imports_tasks_v2": any(run["tasks_v2"] for run in runs),
            }
        found["added_seconds"] = (
            found["with_receiver"]["seconds"] - found["django_q_alone"]["seconds"]
        )
        return found

    def measure_overhead(self, database: str) -> dict[str, Any]:
        env = self.env(
            "cloudtasks", database, CLOUD_TASKS_EMULATOR_HOST=f"127.0.0.1:{free_port_pair()}"
        )
        self.drive(env, "reset")
        return self.drive(env, "overhead", "--count", str(self.sizes.overhead))

    def profile_receiver(self, out: Path) -> dict[str, Any]:
        """pyinstrument's profile of the receiver (and the bare view), on PostgreSQL."""
        env = self.env(
            "cloudtasks", "postgres", CLOUD_TASKS_EMULATOR_HOST=f"127.0.0.1:{free_port_pair()}"
        )
        self.drive(env, "reset")
        return self.drive(env, "profile", "--count", str(self.sizes.overhead), "--out", str(out))

    def measure_ceiling(self) -> dict[str, Any]:
        """The emulator delivering to an endpoint that answers at once (target.py)."""
        emulator_port, target_port = free_port_pair(), free_port()
        delivered = self.work / "delivered.log"
        delivered.unlink(missing_ok=True)
        env = self.env(
            "cloudtasks",
            "sqlite",
            CLOUD_TASKS_EMULATOR_HOST=f"127.0.0.1:{emulator_port}",
            BENCH_RECEIVER_URL=f"http://127.0.0.1:{target_port}/_tasks/",
        )
        emulator = processes.emulator(env, emulator_port, self.log("emulator-ceiling"))
        target = processes.Server(
            "target",
            [sys.executable, "-m", "benchmarks.target", str(target_port), str(delivered)],
            env,
            self.log("target"),
        )
        with running(emulator, target):
            processes.wait_for_port(target_port, target.process)
            before = usage(emulator.pid).cpu_seconds
            found = self.drive(
                env, "ceiling", "--count", str(self.sizes.ceiling), "--delivered", str(delivered)
            )
            cpu = usage(emulator.pid).cpu_seconds - before
        return found | {"emulator_cpu_ms": 1000 * cpu / (self.sizes.ceiling + 1)}


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import psutil
    import psycopg
    import redis

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    versions = {
        name: metadata.version(name)
        for name in ("django", "django-q2", "google-cloud-tasks", "gunicorn", "psycopg", "redis")
    }
    with psycopg.connect(**PG_CONNECT, dbname=PG_NAME) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgresql": row[0] if row else "unknown",
        "redis": redis.Redis.from_url(REDIS_URL).info("server")["redis_version"],
        "packages": versions,
    }


def ensure_services() -> None:
    """PostgreSQL with the benchmark's database, and Redis: clear errors when missing."""
    import psycopg
    import redis

    try:
        with psycopg.connect(**PG_CONNECT, dbname="postgres", autocommit=True) as connection:
            if not connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [PG_NAME]
            ).fetchone():
                connection.execute(f"CREATE DATABASE {PG_NAME}")
    except psycopg.OperationalError as error:
        raise SystemExit(
            f"The benchmarks need PostgreSQL on 127.0.0.1:5432 with trust auth: {error}"
        ) from error
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5).ping()
    except redis.RedisError as error:
        raise SystemExit(f"The benchmarks need Redis on 127.0.0.1:6379: {error}") from error


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="Tiny sizes: checks that every step works; "
        "the numbers mean nothing. Writes under .cache/bench/quick unless --out is given.",
    )
    parser.add_argument(
        "--out", type=Path, help=f"Where to write the results (default: {RESULTS})."
    )
    parser.add_argument("--workers", type=int, default=2, help="Worker processes on each side.")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="Only profile the receiver (pyinstrument, on PostgreSQL) and write it to FILE.",
    )
    options = parser.parse_args(argv)
    sizes = QUICK if options.quick else Sizes()
    work = ROOT / ".cache" / "bench" / ("quick" if options.quick else "full")
    out = options.out or (work if options.quick else RESULTS)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ensure_services()
    run = Run(sizes, work, options.workers)
    if options.profile:
        print(json.dumps(run.profile_receiver(options.profile.resolve())))
        print(f"Written to {options.profile}")
        return

    started = time.monotonic()
    results: dict[str, Any] = {
        "taken": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "workers": options.workers,
        "sizes": asdict(sizes),
        "systems": {},
    }

    def step(name: str, measure: Any, *args: Any) -> Any:
        print(f"[{time.monotonic() - started:6.0f} s] {name}", flush=True)
        return measure(*args)

    for database in DATABASES:
        for system in SYSTEMS:
            results["systems"].setdefault(system, {})[database] = step(
                f"{system} on {database}", run.measure_system, system, database
            )
    results["overhead"] = {
        database: step(f"receiver overhead on {database}", run.measure_overhead, database)
        for database in DATABASES
    }
    results["emulator_ceiling"] = step("the emulator's ceiling", run.measure_ceiling)
    results["cold_start"] = step("cold starts", run.measure_cold_start)
    results["imports"] = step("imports", run.measure_imports)
    results["idle"] = step(f"idle for {sizes.idle_seconds:g} s", run.measure_idle)
    results["seconds"] = time.monotonic() - started

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "RESULTS.md").write_text(report.markdown(results))
    drawn = charts.write(results, out)
    print(report.markdown(results))
    print(f"Written to {out / 'RESULTS.md'}, {out / 'results.json'} and", *(p.name for p in drawn))
