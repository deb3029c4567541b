"""``python manage.py cloudtasks_monitor``: each cluster's queue and results, the
receivers running its tasks, and the Cloud Run job executions running job clusters' tasks,
on one screen.

The figures come from ``metrics.py``. Both renderers draw the same lines, built once by
``layout``: ``--once`` prints them as they are (plain text for a CI log); the live
dashboard only colours them and cuts them to the terminal.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from blessed import Terminal
from django.core.management.base import BaseCommand, CommandParser

from ... import metrics
from ...metrics import QueueSnapshot, Snapshot
from ...receiver import status

# While waiting for the next refresh, the live dashboard looks at the keyboard and the
# terminal's size this often: q and a resize take effect within it.
POLL_SECONDS = 0.2
# The blessed formatting of each kind of line.
STYLES = {"title": "bold", "header": "reverse", "error": "red", "warning": "yellow"}


@dataclass(frozen=True)
class Column:
    title: str
    left: bool = False  # text columns are aligned left, numbers right


@dataclass(frozen=True)
class Line:
    text: str
    style: str = ""  # a key of STYLES, or plain


QUEUE_COLUMNS = (
    Column("Cluster", left=True),
    Column("State", left=True),
    Column("Waiting"),
    Column("Oldest"),
    Column("Disp/min"),
    Column("Running"),
    Column("Done/min"),
    Column("Succeeded"),
    Column("Failed"),
    Column("p50"),
    Column("p95"),
)
EXECUTION_COLUMNS = (
    Column("Cluster", left=True),
    Column("Execution", left=True),
    Column("Task", left=True),
    Column("Running for"),
)
RECEIVER_COLUMNS = (
    Column("Host", left=True),
    Column("Id", left=True),
    Column("PID"),
    Column("In flight"),
    Column("Done"),
    Column("Up"),
)


class Command(BaseCommand):
    help = (
        "Watch each cluster's Cloud Tasks queue (depth, dispatch rate, oldest task), its "
        "results (rates, successes and failures, run times, the functions failing most), "
        "the receiver processes and the Cloud Run job executions. q quits."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="Print one plain-text snapshot and exit, for a log or a script.",
        )
        parser.add_argument(
            "--interval",
            type=_positive(float),
            default=2.0,
            metavar="SECONDS",
            help="Seconds between two refreshes (default: %(default)g).",
        )
        parser.add_argument(
            "--window",
            type=_positive(int),
            default=int(metrics.DEFAULT_WINDOW.total_seconds() // 60),
            metavar="MINUTES",
            help="Count successes, failures and run times over the last MINUTES "
            "(default: %(default)d).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        window = timedelta(minutes=options["window"])
        if options["once"]:
            lines = layout(metrics.snapshot(window))
            self.stdout.write("\n".join(line.text for line in lines))
        else:
            live(window, options["interval"])


def layout(snapshot: Snapshot) -> list[Line]:
    """The screen, as lines of fixed columns; a queue's notes go under its row."""
    minutes = int(snapshot.window.total_seconds() // 60)
    lines = [
        Line(
            f"Cloud Tasks queues at {snapshot.taken:%Y-%m-%d %H:%M:%S %Z}; results over the "
            f"last {minutes} min; p50, p95: run time",
            "title",
        ),
        *_table(QUEUE_COLUMNS, [(_queue_cells(q), _queue_notes(q)) for q in snapshot.queues]),
        Line(""),
        Line(
            f"Receivers: the processes that ran tasks in the last {status.TTL // 60} min",
            "title",
        ),
    ]
    if snapshot.receivers_unavailable:
        lines.append(Line(snapshot.receivers_unavailable, "error"))
    elif not snapshot.receivers:
        lines.append(Line("None."))
    else:
        cells = [
            [
                receiver.host,
                receiver.instance_id[-8:],
                str(receiver.pid),
                str(receiver.in_flight),
                str(receiver.finished),
                _span(receiver.uptime),
            ]
            for receiver in snapshot.receivers
        ]
        lines += _table(RECEIVER_COLUMNS, [(row, []) for row in cells])
    if snapshot.jobs:
        lines += _executions(snapshot)
    return lines


def _executions(snapshot: Snapshot) -> list[Line]:
    lines = [
        Line(""),
        Line(f"Cloud Run job executions running: {', '.join(snapshot.jobs)}", "title"),
    ]
    lines += [Line(error, "error") for error in snapshot.jobs_unavailable]
    if not snapshot.executions:
        return [*lines, Line("None.")]
    rows = [
        (
            [
                execution.cluster,
                execution.execution,
                execution.task_id or "(no task of this project)",
                _span(execution.age),
            ],
            [Line("  cancelling: cancel() asked it to stop", "warning")]
            if execution.cancelling
            else [],
        )
        for execution in snapshot.executions
    ]
    return lines + _table(EXECUTION_COLUMNS, rows)


def live(window: timedelta, interval: float) -> None:
    """Fullscreen until q: the figures every ``interval`` seconds, redrawn on a resize."""
    term = Terminal()
    footer = [Line(""), Line(f"q quits; refreshed every {interval:g} s")]
    drawn = None  # the terminal's size at the last drawing
    with term.fullscreen(), term.hidden_cursor(), term.cbreak():
        while True:
            lines, fresh = layout(metrics.snapshot(window)) + footer, True
            refresh_at = time.monotonic() + interval
            while (left := refresh_at - time.monotonic()) > 0:
                size = (term.width, term.height)
                if fresh or size != drawn:
                    _draw(term, lines, clear=size != drawn)
                    drawn, fresh = size, False
                if term.inkey(timeout=min(left, POLL_SECONDS)).lower() == "q":
                    return


def _draw(term: Any, lines: Sequence[Line], *, clear: bool) -> None:
    """Over the previous drawing (or a cleared screen, after a resize), each line cut to fit."""
    out = [term.clear if clear else term.home]
    for row, line in enumerate(lines[: term.height]):
        text = line.text[: term.width]
        styled = getattr(term, STYLES[line.style])(text) if line.style else text
        out.append(term.move_yx(row, 0) + styled + term.clear_eol)
    out.append(term.clear_eos)
    term.stream.write("".join(out))
    term.stream.flush()


def _table(columns: Sequence[Column], rows: Sequence[tuple[list[str], list[Line]]]) -> list[Line]:
    """A header and the rows, each column as wide as its widest cell; notes under rows."""
    widths = [
        max([len(column.title), *(len(cells[i]) for cells, _ in rows)])
        for i, column in enumerate(columns)
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if column.left else cell.rjust(width)
            for cell, width, column in zip(cells, widths, columns, strict=True)
        ).rstrip()

    lines = [Line(line([column.title for column in columns]), "header")]
    for cells, notes in rows:
        lines += [Line(line(cells)), *notes]
    return lines


def _queue_cells(snapshot: QueueSnapshot) -> list[str]:
    queue, results = snapshot.queue, snapshot.results
    return [
        snapshot.cluster,
        queue.state if queue else "-",
        _count(queue.waiting if queue else None),
        _span(queue.oldest_age) if queue and queue.oldest_age is not None else "-",
        _count(queue.dispatched_last_minute if queue else None),
        _count(queue.running if queue else None),
        str(results.completed_last_minute),
        str(results.successes),
        str(results.failures),
        _seconds(results.p50),
        _seconds(results.p95),
    ]


def _queue_notes(snapshot: QueueSnapshot) -> list[Line]:
    notes = []
    if snapshot.unavailable:
        notes.append(Line(f"  {snapshot.unavailable}", "error"))
    if snapshot.results.top_failing:
        failing = ", ".join(f"{func} ({count})" for func, count in snapshot.results.top_failing)
        notes.append(Line(f"  Failing most: {failing}", "warning"))
    return notes


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _seconds(value: timedelta | None) -> str:
    if value is None:
        return "-"
    seconds = value.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.2f}s"
    return f"{seconds:.1f}s" if seconds < 60 else _span(value)


def _span(value: timedelta) -> str:
    """A duration to the second, in its two largest units: 45s, 3m05s, 2h03m, 1d02h."""
    seconds = int(value.total_seconds())
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    if days:
        return f"{days}d{hour:02d}h"
    if hours:
        return f"{hours}h{minute:02d}m"
    return f"{minutes}m{second:02d}s" if minutes else f"{second}s"


def _positive(kind: type[float] | type[int]) -> Any:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise ValueError(text)
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse
