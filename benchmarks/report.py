"""The results as markdown: the tables, and whether this round's goals hold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NAMES = {
    "cloudtasks": "CloudTasksBroker + receiver",
    "orm": "ORM broker + qcluster",
    "redis": "Redis broker + qcluster",
}
DATABASE_NAMES = {"postgres": "PostgreSQL", "sqlite": "SQLite"}
FUNC_NAMES = {"trivial": "trivial task", "write_row": "task writing a row"}


@dataclass(frozen=True)
class Goal:
    name: str
    measured: str
    held: bool


def percentile(ordered: Sequence[float], percent: float) -> float:
    """Nearest rank, of values already sorted."""
    rank = max(1, -(-int(percent * len(ordered)) // 100))
    return ordered[min(rank, len(ordered)) - 1]


def cpu_per_task(run: dict[str, Any]) -> float:
    """Our side's CPU per task: the enqueueing process and the executing processes (the
    first tree measured; the emulator, Google's side, is the second)."""
    return float(run["enqueue_cpu_ms"] + run["tree_cpu_ms"][0])


# This round's targets, by database: the receiver's CPU per trivial task against ORM +
# qcluster's (the CPU of Cloud Run is billed), and against Redis + qcluster's.
CPU_TARGETS = {"postgres": 0.7, "sqlite": 0.9}
REDIS_CPU_TARGET = 1.0
OVERHEAD_TARGET = 2.0  # the receiver against the bare view, in-process
ENQUEUE_TARGET = 1.0  # async_task()'s CPU against the ORM broker's
LATENCY_TARGET_MS = 10.0


def goals(results: dict[str, Any]) -> list[Goal]:
    found = []
    systems = results["systems"]
    for database, name in DATABASE_NAMES.items():
        ours = systems["cloudtasks"][database]
        orm, redis = systems["orm"][database], systems["redis"][database]
        mine = cpu_per_task(ours["cpu_trivial"])
        for rival, target, rival_name in (
            (orm, CPU_TARGETS[database], "ORM + qcluster's"),
            (redis, REDIS_CPU_TARGET, "Redis + qcluster's"),
        ):
            theirs = cpu_per_task(rival["cpu_trivial"])
            found.append(
                Goal(
                    f"CPU per trivial task at most {target} times {rival_name} ({name})",
                    f"{mine:.2f} ms vs {theirs:.2f} ms ({mine / theirs:.2f}x)",
                    mine <= target * theirs,
                )
            )
        ratio = results["overhead"][database]["ratio"]
        found.append(
            Goal(
                f"Receiver at most {OVERHEAD_TARGET} times the bare view ({name})",
                f"{ratio:.2f}x",
                ratio <= OVERHEAD_TARGET,
            )
        )
        mine_rate = ours["throughput"]["tasks_per_second"]
        redis_rate = redis["throughput"]["tasks_per_second"]
        found.append(
            Goal(
                f"Throughput at least Redis + qcluster's ({name})",
                f"{mine_rate:.0f} vs {redis_rate:.0f} tasks/s",
                mine_rate >= redis_rate,
            )
        )
        enqueue = ours["cpu_trivial"]["enqueue_cpu_ms"]
        orm_enqueue = orm["cpu_trivial"]["enqueue_cpu_ms"]
        found.append(
            Goal(
                f"Enqueue CPU per task at most the ORM broker's ({name})",
                f"{enqueue:.2f} ms vs {orm_enqueue:.2f} ms ({enqueue / orm_enqueue:.2f}x)",
                enqueue <= ENQUEUE_TARGET * orm_enqueue,
            )
        )
        p50 = percentile(ours["latency"]["latencies_ms"], 50)
        found.append(
            Goal(
                f"p50 latency at most {LATENCY_TARGET_MS:.0f} ms ({name})",
                f"{p50:.1f} ms (ORM + qcluster: "
                f"{percentile(orm['latency']['latencies_ms'], 50):.1f} ms)",
                p50 <= LATENCY_TARGET_MS,
            )
        )
    # While no receiver process ran, the cold-start tasks waited in Cloud Tasks; the
    # receiver started afterwards ran each of them.
    cold = results["cold_start"]
    found.append(
        Goal(
            "No process running while idle",
            f"0 processes: {cold['runs']} of {cold['runs']} tasks enqueued with no receiver "
            "running ran once one started",
            cold["receiver_runs"] == cold["runs"],
        )
    )
    return found


def summary(results: dict[str, Any]) -> str:
    """The headline numbers, a column a system: the table the README shows."""
    systems, idle, cold = results["systems"], results["idle"], results["cold_start"]
    rows = []
    for func, func_name in FUNC_NAMES.items():
        for database, database_name in DATABASE_NAMES.items():
            rows.append(
                [f"CPU per {func_name}, {database_name}"]
                + [
                    f"{cpu_per_task(systems[system][database][f'cpu_{func}']):.2f} ms"
                    for system in NAMES
                ]
            )
    for database, database_name in DATABASE_NAMES.items():
        rows.append(
            [f"Latency p50 / p99, {database_name}"]
            + [
                " / ".join(
                    f"{percentile(systems[system][database]['latency']['latencies_ms'], p):.1f}"
                    for p in (50, 99)
                )
                + " ms"
                for system in NAMES
            ]
        )
    for database, database_name in DATABASE_NAMES.items():
        rows.append(
            [f"Throughput, {database_name}"]
            + [
                f"{systems[system][database]['throughput']['tasks_per_second']:.0f} tasks/s"
                for system in NAMES
            ]
        )
    rows.append(
        [f"Idle {idle['seconds']:g} s: processes, memory, CPU", "none"]
        + [
            f"{idle[system]['processes']}, {idle[system]['rss_mib']:.0f} MiB, "
            f"{idle[system]['cpu_seconds']:.2f} s"
            for system in ("orm", "redis")
        ]
    )
    rows.append(
        [
            "Start to the first task run",
            f"{cold['receiver']:.2f} s",
            f"{cold['qcluster']:.2f} s",
            "",
        ]
    )
    return table(["", *NAMES.values()], rows)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    machine, sizes, systems = results["machine"], results["sizes"], results["systems"]
    parts = [
        "# Benchmark results",
        "",
        f"Taken {results['taken']} by `nox -s bench` in {results['seconds'] / 60:.0f} min, on "
        f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"{machine['system']}; Python {machine['python']}, PostgreSQL {machine['postgresql']}, "
        f"Redis {machine['redis']}; "
        + ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
        + f". Each side has {results['workers']} worker processes (gunicorn sync workers, "
        "qcluster workers). Everything, the Cloud Tasks emulator and the databases "
        "included, shares this machine.",
        "",
        summary(results),
        "",
        "## Goals",
        "",
        table(
            ["Goal", "Measured", "Held"],
            [
                [goal.name, goal.measured, "yes" if goal.held else "**no**"]
                for goal in goals(results)
            ],
        ),
        "",
        f"## CPU time per task ({sizes['cpu']} tasks, enqueued one after another)",
        "",
        "Enqueue: the process calling async_task(). Execute: the receiver's gunicorn, or "
        "every qcluster process, from the first enqueue to the last result saved. The "
        "emulator stands in for Google's service and is not counted in the total.",
        "",
    ]
    rows = []
    for database, database_name in DATABASE_NAMES.items():
        for func, func_name in FUNC_NAMES.items():
            for system, name in NAMES.items():
                run = systems[system][database][f"cpu_{func}"]
                emulator = f"{run['tree_cpu_ms'][1]:.2f}" if len(run["tree_cpu_ms"]) > 1 else ""
                rows.append(
                    [
                        f"{name}, {database_name}, {func_name}",
                        f"{run['enqueue_cpu_ms']:.2f}",
                        f"{run['tree_cpu_ms'][0]:.2f}",
                        f"**{cpu_per_task(run):.2f}**",
                        emulator,
                    ]
                )
    parts += [
        table(
            ["System, database, task", "Enqueue ms", "Execute ms", "Total ms", "Emulator ms"], rows
        ),
        "",
        f"## Latency, async_task() to the result saved ({sizes['latency']} tasks, one at a time)",
        "",
    ]
    rows = []
    for database, database_name in DATABASE_NAMES.items():
        for system, name in NAMES.items():
            latencies = systems[system][database]["latency"]["latencies_ms"]
            rows.append(
                [f"{name}, {database_name}"]
                + [f"{percentile(latencies, p):.1f}" for p in (50, 95, 99)]
            )
    parts += [
        table(["System, database", "p50 ms", "p95 ms", "p99 ms"], rows),
        "",
        f"## Throughput ({sizes['throughput']} trivial tasks, enqueued from 8 threads)",
        "",
    ]
    rows = []
    for database, database_name in DATABASE_NAMES.items():
        for system, name in NAMES.items():
            run = systems[system][database]["throughput"]
            rows.append(
                [
                    f"{name}, {database_name}",
                    f"{run['tasks_per_second']:.0f}",
                    f"{run['seconds']:.1f}",
                    f"{run['enqueue_seconds']:.1f}",
                ]
            )
    ceiling = results["emulator_ceiling"]
    best = max(systems["cloudtasks"][db]["throughput"]["tasks_per_second"] for db in DATABASE_NAMES)
    verdict = (
        f"above the receiver's best {best:.0f} tasks/s: the emulator did not hold it back, though "
        "on this machine it takes CPU that Google's service would not take from yours"
        if ceiling["tasks_per_second"] > best * 1.1
        else f"**no more than the receiver's {best:.0f} tasks/s: the emulator was the limit**"
    )
    parts += [
        table(["System, database", "Tasks/s", "All saved after s", "Enqueued after s"], rows),
        "",
        f"The emulator's own ceiling, delivering {ceiling['tasks']} tasks to an endpoint that "
        f"answers at once: **{ceiling['tasks_per_second']:.0f} tasks/s**, "
        f"{ceiling['emulator_cpu_ms']:.2f} ms of its CPU per task; {verdict}.",
        "",
    ]
    idle = results["idle"]
    parts += [
        f"## Idle, {idle['seconds']:g} s with nothing to do",
        "",
        table(
            ["System", "Processes", "RSS MiB", "CPU s"],
            [
                ["CloudTasksBroker + receiver on Cloud Run (scaled to zero)", "0", "0", "0"],
                *(
                    [
                        label,
                        str(idle[key]["processes"]),
                        f"{idle[key]['rss_mib']:.0f}",
                        f"{idle[key]['cpu_seconds']:.2f}",
                    ]
                    for key, label in (
                        ("orm", NAMES["orm"]),
                        ("redis", NAMES["redis"]),
                        ("receiver_kept_running", "The receiver's gunicorn, if kept running"),
                    )
                ),
            ],
        ),
        "",
    ]
    cold, imports = results["cold_start"], results["imports"]
    parts += [
        f"## Cold start (median of {cold['runs']})",
        "",
        table(
            ["What", "Seconds"],
            [
                [
                    "gunicorn (1 worker) start to the first task run by the receiver",
                    f"{cold['receiver']:.2f}",
                ],
                ["  of which: start to listening", f"{cold['receiver_listening']:.2f}"],
                ["qcluster (ORM broker) start to its first task run", f"{cold['qcluster']:.2f}"],
                [
                    "Django set-up and URLconf, django-q alone",
                    f"{imports['django_q_alone']['seconds']:.3f}",
                ],
                [
                    "The same with the receiver mounted",
                    f"{imports['with_receiver']['seconds']:.3f}",
                ],
                ["Added by the receiver", f"{imports['added_seconds']:.3f}"],
            ],
        ),
        "",
        "The receiver's imports load google.cloud.tasks_v2: "
        + ("**yes**" if imports["with_receiver"]["imports_tasks_v2"] else "no")
        + ".",
        "",
        "## Receiver overhead (in-process, Django's test client)",
        "",
        "The receiver view against a bare view that verifies and unpickles the same package, "
        "calls the same function and writes the same result row: no token check, no receipt, "
        "no signals, hooks or retries. Median of blocks of alternating requests.",
        "",
        table(
            ["Database", "Receiver ms", "Bare view ms", "Ratio", "CPU ratio"],
            [
                [
                    DATABASE_NAMES[database],
                    f"{run['ms']['receiver']:.2f}",
                    f"{run['ms']['bare']:.2f}",
                    f"{run['ratio']:.2f}",
                    f"{run['cpu_ratio']:.2f}",
                ]
                for database, run in results["overhead"].items()
            ],
        ),
        "",
    ]
    return "\n".join(parts)
