"""The results as charts (SVG), beside results.json: CPU per task, latency and throughput,
the receiver beside qcluster with the ORM broker and with the Redis broker.

``python -m benchmarks.charts [results.json]`` draws them again from a results file
without running the benchmarks; the harness draws them after every run.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display to open, on CI or anywhere

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from .report import DATABASE_NAMES, FUNC_NAMES, NAMES, cpu_per_task, percentile

# One colour a system, the same on every chart; ours first.
COLOURS = {"cloudtasks": "#3367d6", "orm": "#9e9e9e", "redis": "#d9534f"}
CHARTS = ("cpu-per-task.svg", "latency.svg", "throughput.svg")

plt.rcParams.update(
    {
        # Text stays text: the page's own font draws it, and a reader can search it.
        "svg.fonttype": "none",
        # The same results give the same file, so a redrawn chart shows no spurious diff.
        "svg.hashsalt": "django-q-cloudtasks",
        "font.size": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)


def grouped_bars(
    axes: Axes, groups: Sequence[str], value: Callable[[str, int], float], unit: str
) -> None:
    """One bar a system in each group, labelled with its value."""
    width = 0.8 / len(NAMES)
    for index, (system, name) in enumerate(NAMES.items()):
        positions = [group + (index - (len(NAMES) - 1) / 2) * width for group in range(len(groups))]
        heights = [value(system, group) for group in range(len(groups))]
        bars = axes.bar(positions, heights, width, label=name, color=COLOURS[system])
        axes.bar_label(bars, fmt=f"%.{0 if max(heights) >= 100 else 1}f", fontsize=8, padding=2)
    axes.set_xticks(range(len(groups)), groups)
    axes.set_ylabel(unit)
    axes.margins(y=0.15)


def figure(title: str, panels: int = 1) -> tuple[Figure, list[Axes]]:
    """A figure with the systems' legend under its panels, where it hides no bar."""
    drawn, axes = plt.subplots(1, panels, figsize=(8, 4), squeeze=False, layout="constrained")
    drawn.suptitle(title)
    return drawn, list(axes[0])


def with_legend(drawn: Figure, axes: Axes) -> Figure:
    drawn.legend(
        *axes.get_legend_handles_labels(),
        loc="outside lower center",
        ncol=len(NAMES),
        frameon=False,
    )
    return drawn


def cpu_chart(results: dict[str, Any]) -> Figure:
    systems = results["systems"]
    groups = [(func, database) for func in FUNC_NAMES for database in DATABASE_NAMES]
    drawn, (axes,) = figure("CPU per task: the enqueuing process and the executing processes")
    grouped_bars(
        axes,
        [f"{FUNC_NAMES[func]}\n{DATABASE_NAMES[database]}" for func, database in groups],
        lambda system, group: cpu_per_task(
            systems[system][groups[group][1]][f"cpu_{groups[group][0]}"]
        ),
        "CPU per task (ms), lower is better",
    )
    return with_legend(drawn, axes)


def latency_chart(results: dict[str, Any]) -> Figure:
    """p50 and p99 a system; qcluster's ORM broker polls, so the axis is logarithmic."""
    systems = results["systems"]
    drawn, panels = figure("Latency, from async_task() to the result row", panels=2)
    for panel, percent in zip(panels, (50, 99), strict=True):
        grouped_bars(
            panel,
            list(DATABASE_NAMES.values()),
            lambda system, group, percent=percent: percentile(
                sorted(systems[system][list(DATABASE_NAMES)[group]]["latency"]["latencies_ms"]),
                percent,
            ),
            "latency (ms, log scale), lower is better" if percent == 50 else "",
        )
        panel.set_yscale("log")
        panel.yaxis.set_major_formatter(ScalarFormatter())
        panel.set_title(f"p{percent}")
    panels[1].sharey(panels[0])
    return with_legend(drawn, panels[0])


def throughput_chart(results: dict[str, Any]) -> Figure:
    systems = results["systems"]
    drawn, (axes,) = figure("Throughput on two shared cores, the emulator included")
    grouped_bars(
        axes,
        list(DATABASE_NAMES.values()),
        lambda system, group: systems[system][list(DATABASE_NAMES)[group]]["throughput"][
            "tasks_per_second"
        ],
        "tasks per second, higher is better",
    )
    return with_legend(drawn, axes)


def write(results: dict[str, Any], out: Path) -> list[Path]:
    """Draw every chart into ``out``; returns the files written."""
    written = []
    for name, draw in zip(CHARTS, (cpu_chart, latency_chart, throughput_chart), strict=True):
        drawn = draw(results)
        path = out / name
        # No date in the file: it would change with every redraw of the same results.
        drawn.savefig(path, format="svg", metadata={"Date": None})
        plt.close(drawn)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.charts", description=__doc__)
    parser.add_argument(
        "results",
        nargs="?",
        type=Path,
        default=Path(__file__).parent / "results" / "results.json",
        help="The results file; the charts are written beside it.",
    )
    options = parser.parse_args(argv)
    for path in write(json.loads(options.results.read_text()), options.results.parent):
        print(f"Written to {path}")


if __name__ == "__main__":
    main()
