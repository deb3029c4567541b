"""``manage.py cloudtasks_monitor``: one plain snapshot with ``--once``, else a live
dashboard in the terminal until q."""

from __future__ import annotations

import os
import subprocess
import types
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from django_q.tasks import async_task

from django_q_cloudtasks import metrics
from django_q_cloudtasks.management.commands.cloudtasks_monitor import layout
from django_q_cloudtasks.receiver.status import StatusWriter, rows
from tests.conftest import wait_for
from tests.receiver.test_status import forget_rows
from tests.support.terminal import in_terminal, read_until, set_size
from tests.test_metrics import ran

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
HEADER = (
    "Cluster  State   Waiting  Oldest  Disp/min  Running  Done/min  Succeeded  Failed    p50    p95"
)


def monitor_once(*args: str) -> list[str]:
    out = StringIO()
    call_command("cloudtasks_monitor", "--once", *args, stdout=out)
    return out.getvalue().splitlines()


@pytest.fixture
def now(paused_cloud_tasks, monkeypatch) -> datetime:
    """The monitor's clock: 5 minutes after the 3 tasks waiting in the tests queue arrived."""
    arrived = timezone.now()
    for _ in range(3):
        async_task("math.floor", 1.5)
    at = arrived + timedelta(minutes=5, seconds=0.5)  # the age shown: 5m00s, not 4m59s
    monkeypatch.setattr(metrics, "timezone", types.SimpleNamespace(now=lambda: at))
    forget_rows()
    return at


def test_once_prints_a_row_per_cluster_with_its_figures(now):
    for took, ago in [(0.25, 10), (1, 30), (2, 90), (3, 600)]:
        ran(took, stopped=now - timedelta(seconds=ago))
    ran(1.5, stopped=now - timedelta(seconds=20), func="app.flaky", success=False)
    ran(12.5, stopped=now - timedelta(minutes=2), cluster="second")
    assert monitor_once() == [
        f"Cloud Tasks queues at {now:%Y-%m-%d %H:%M:%S} UTC; "
        "results over the last 60 min; p50, p95: run time",
        HEADER,
        "tests    PAUSED        3   5m00s         0        0         3          4       1  1.50s  3.00s",
        "  Failing most: app.flaky (1)",
        "second   PAUSED        0       -         0        0         0          1       0  12.5s  12.5s",
        "",
        "Receivers: the processes that ran tasks in the last 5 min",
        "None.",
    ]


def test_once_counts_over_the_window_asked_for(now):
    ran(1, stopped=now - timedelta(minutes=20))
    ran(2, stopped=now - timedelta(minutes=5))
    title, _, tests, *_ = monitor_once("--window", "10")
    assert "results over the last 10 min;" in title
    assert tests.split()[-4:] == ["1", "0", "2.00s", "2.00s"]


def test_an_unreachable_queue_shows_its_error_and_the_others_still_show(
    now, unreachable_second_queue
):
    unreachable = unreachable_second_queue
    ran(1, stopped=now - timedelta(minutes=2), cluster="second", success=False)
    lines = monitor_once()  # no CommandError: the exit status is 0
    tests, second, error = lines[2], lines[3], lines[4]
    assert tests.split()[:3] == ["tests", "PAUSED", "3"]
    assert second.split() == ["second", "-", "-", "-", "-", "-", "0", "0", "1", "1.00s", "1.00s"]
    assert error.startswith(
        "  Could not read queue projects/test-project/locations/europe-west1/queues/second-queue:"
    )
    assert error.endswith(f"is the emulator at {unreachable} running?")


def test_once_lists_the_receivers(now):
    writer = StatusWriter()
    with writer.in_flight():
        wait_for(rows)
        status = writer.row()
        lines = monitor_once()[-2:]
    uptime = now - status.tob
    assert lines[0].split() == ["Host", "Id", "PID", "In", "flight", "Done", "Up"]
    assert lines[1].split() == [
        status.host,
        status.cluster_id[-8:],
        str(os.getpid()),
        "1",
        "0",
        f"{int(uptime.total_seconds()) // 60}m{int(uptime.total_seconds()) % 60:02d}s",
    ]


def test_the_figures_are_written_to_their_scale():
    taken = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
    queue = metrics.QueueSnapshot(
        cluster="reports",
        queue_path="projects/p/locations/l/queues/reports",
        queue=metrics.QueueFigures(
            "RUNNING", 40, timedelta(hours=2, minutes=3, seconds=9), None, 1
        ),
        unavailable=None,
        results=metrics.ResultFigures(
            0, 9, 0, timedelta(milliseconds=250), timedelta(seconds=75), ()
        ),
    )
    receiver = metrics.Receiver("web-1", "0123456789abcdef", 7, 0, 3, timedelta(days=1, hours=2))
    lines = layout(metrics.Snapshot(taken, timedelta(hours=1), (queue,), (receiver,), None))
    assert [line.text.split() for line in lines[2:3] + lines[-1:]] == [
        ["reports", "RUNNING", "40", "2h03m", "-", "1", "0", "9", "0", "250ms", "1m15s"],
        ["web-1", "89abcdef", "7", "0", "3", "1d02h"],
    ]


@pytest.mark.parametrize("option", ["--interval=0", "--window=0", "--window=1.5"])
def test_intervals_and_windows_are_positive(option):
    with pytest.raises(CommandError, match="invalid"):
        call_command("cloudtasks_monitor", "--once", option)


@contextmanager
def dashboard(emulator_host: str, *args: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """The live command in a 200 x 40 pseudo-terminal; yields the terminal's other end."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.project.settings",
        "DJQ_DB_NAME": str(connection.settings_dict["NAME"]),
        "CLOUD_TASKS_EMULATOR_HOST": emulator_host,
    }
    with in_terminal(["cloudtasks_monitor", *args], env) as opened:
        yield opened


def test_live_it_draws_fullscreen_follows_a_resize_at_once_and_quits_on_q(paused_cloud_tasks):
    # Refreshes a minute apart: the resize and the q are seen between two.
    with dashboard(paused_cloud_tasks.emulator.address, "--interval", "60") as (terminal, process):
        seen = bytearray()
        read_until(terminal, b"q quits; refreshed every 60 s", seen)
        assert b"\x1b[?1049h" in seen  # the alternate screen: fullscreen
        assert b"results over the last 60 min" in seen
        assert b"Cluster  State   Waiting  Oldest  Disp/min  Running  Done/min" in seen
        set_size(terminal, 40, 30)
        cleared = read_until(terminal, b"\x1b[2J", seen, len(seen), timeout=5)
        frame = bytes(seen[cleared : read_until(terminal, b"\x1b[J", seen, cleared)])
        assert b"Cloud Tasks queues at" in frame
        assert b"results over" not in frame  # each line cut to the 30 columns
        os.write(terminal, b"q")
        read_until(terminal, b"\x1b[?1049l", seen, timeout=5)  # the screen restored
        assert process.wait(timeout=5) == 0


def test_live_it_shows_new_figures_at_each_refresh(paused_cloud_tasks):
    with dashboard(paused_cloud_tasks.emulator.address, "--interval", "0.5") as (terminal, _):
        seen = bytearray()
        read_until(terminal, b"q quits; refreshed every 0.5 s", seen)
        ran(stopped=timezone.now(), func="app.failed_since", success=False)
        read_until(terminal, b"Failing most: app.failed_since (1)", seen, timeout=10)


@pytest.fixture
def job_cluster(paused_cloud_tasks, configure, tmp_path):
    """The job cluster "long", whose job "worker" the test's emulator runs."""
    from tests.support.jobs import noting_job

    job = "projects/test-project/locations/europe-west1/jobs/worker"
    paused_cloud_tasks.emulator.ensure_job(noting_job(job, tmp_path, tmp_path / "notes"))
    long = {
        "timeout": 60,
        "cloud_tasks": {"target": "cloud_run_job", "job": "worker", "queue": "tests"},
    }
    configure(q_cluster={"ALT_CLUSTERS": {"long": long}})
    return paused_cloud_tasks.emulator


def test_once_lists_the_job_executions_running_and_the_task_each_runs(now, job_cluster):
    from django_q_cloudtasks.conf import queue_settings
    from django_q_cloudtasks.gcp import jobs
    from django_q_cloudtasks.models import Receipt

    running = jobs.start(queue_settings("long"), env={"SLEEP": "60"}, timeout=None)
    finished = jobs.start(queue_settings("long"), env={}, timeout=None)
    job_cluster.jobs.wait(finished, 30)
    Receipt.objects.claim("a1b2c3", "long", "launcher", timedelta(minutes=5))
    Receipt.objects.note_execution("a1b2c3", "launcher", running)
    Receipt.objects.request_cancel("a1b2c3", "long")
    lines = monitor_once()
    section = lines[
        lines.index(
            "Cloud Run job executions running: projects/test-project/locations/europe-west1/jobs/worker"
        ) :
    ]
    assert section[1].split() == ["Cluster", "Execution", "Task", "Running", "for"]
    assert section[2].split()[:3] == ["long", running.rsplit("/", 1)[1], "a1b2c3"]
    assert section[3] == "  cancelling: cancel() asked it to stop"
    assert len(section) == 4  # the finished execution is not listed


def test_a_job_cloud_run_does_not_answer_for_is_said_so(now, job_cluster, configure):
    from tests.support.ports import free_port

    nobody = f"127.0.0.1:{free_port()}"
    long = {
        "timeout": 60,
        "cloud_tasks": {
            "target": "cloud_run_job",
            "job": "worker",
            "queue": "tests",
            "emulator_host": nobody,
        },
    }
    configure(q_cluster={"ALT_CLUSTERS": {"long": long}})
    lines = monitor_once()
    assert lines[-2].startswith("Could not list the executions of Cloud Run job ")
    assert lines[-1] == "None."
