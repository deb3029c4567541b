"""``cloudtasks_monitor``'s live dashboard as a watcher's terminal shows it, over real
deliveries: the built-in emulator delivers to a 2-worker gunicorn sharing a Redis cache,
and the dashboard runs in a pseudo-terminal whose screen pyte plays. Set
DJQ_SCREENSHOTS=1 to rewrite docs/cloudtasks-monitor.svg, the picture of it in the
monitoring guide."""

from __future__ import annotations

import os
import socket
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from django_q.models import Success
from django_q.tasks import async_task

from django_q_cloudtasks.gcp.client import tasks_client
from django_q_cloudtasks.receiver.status import writer
from tests.conftest import wait_for
from tests.e2e.conftest import PARENT, stack_env
from tests.receiver.test_status import forget_rows
from tests.support import terminal as terminals
from tests.support.terminal import Terminal, in_terminal

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PICTURE = Path(__file__).resolve().parents[2] / "docs" / "cloudtasks-monitor.svg"
LINES, COLUMNS = 16, 96
# As on Cloud Run, where the receivers' host names carry the revision.
REVISION = {"K_REVISION": "mysite-00042-xyz"}
SERVER = f"{socket.gethostname()} (mysite-00042-xyz)"


def waiting(stack: dict[str, str], queue: str) -> list[object]:
    return list(tasks_client(stack["emulator_host"]).list_tasks(parent=f"{PARENT}/{queue}"))


def fields(terminal: Terminal, starting: str) -> list[str]:
    return terminal.text[terminal.row(starting)].split()


def receivers(terminal: Terminal) -> list[str]:
    """The rows of the receivers' table."""
    return [line for line in terminal.text[terminal.row("Host") + 1 :] if line][:-1]  # footer


def settled(terminal: Terminal) -> bool:
    """The screen shows the 2 tasks running in one queue, each in one receiver, and the
    3 waiting in the other, paused; a frame half drawn is not that yet."""
    try:
        return (
            fields(terminal, "tests ")[5] == "2"
            and fields(terminal, "second ")[1:3] == ["PAUSED", "3"]
            and [row.split()[-3] for row in receivers(terminal)] == ["1", "1"]
        )
    except (StopIteration, IndexError):
        return False


def test_the_live_dashboard_shows_the_queues_their_results_and_the_receivers(
    shared_cache, start_stack, tmp_path
):
    # Nothing of this process's own: an earlier test's receiver rows would show too.
    forget_rows()
    writer.reset()
    stack = start_stack(workers=2, server_env=shared_cache | REVISION)
    for n in range(12):
        async_task("tests.project.tasks.sleep", 0.1 + 0.05 * (n % 6))
    for n in range(2):
        async_task("tests.project.tasks.count_and_fail", str(tmp_path / f"failed-{n}"))
    for _ in range(4):
        async_task("tests.project.tasks.sleep", 0.3, cluster="second")
    async_task("math.sqrt", -1, cluster="second")  # ValueError, twice: its last attempt
    # Retried to their last attempt, the failing ones too.
    wait_for(lambda: not waiting(stack, "tests") and not waiting(stack, "second-queue"), timeout=60)

    tasks_client(stack["emulator_host"]).pause_queue(name=f"{PARENT}/second-queue")
    for n in range(3):
        async_task("tests.project.tasks.echo", n, cluster="second")
    held = tmp_path / "held"
    for _ in range(2):  # one in each sync worker
        # A timeout of their own: the cluster's 20 s might end them before the screen settled.
        async_task("tests.project.tasks.run_until_released", str(held), timeout=120)
    env = stack_env(stack) | shared_cache
    try:
        with in_terminal(
            ["cloudtasks_monitor", "--interval", "1"], env, lines=LINES, columns=COLUMNS
        ) as (fd, process):
            terminal = Terminal(COLUMNS, LINES)
            terminal.watch(fd, settled, timeout=60)
            shown = terminal.text

            assert shown[0].startswith("Cloud Tasks queues at ")
            assert all(char.bold for char in terminal.cells(0))
            assert all(char.reverse for char in terminal.cells(terminal.row("Cluster")))
            # Cluster State Waiting Oldest Disp/min Running Done/min Succeeded Failed p50 p95
            assert fields(terminal, "tests ")[7:9] == ["12", "2"]
            assert fields(terminal, "second ")[7:9] == ["4", "1"]
            failing = terminal.row("  Failing most: tests.project.tasks.count_and_fail (2)")
            assert terminal.row("  Failing most: math.sqrt (1)") > terminal.row("second ")
            assert {char.fg for char in terminal.cells(failing)} == {"brown"}  # ANSI yellow
            assert [row.startswith(f"{SERVER}  ") for row in receivers(terminal)] == [True] * 2
            assert [line for line in shown if line][-1] == "q quits; refreshed every 1 s"

            picture = terminals.svg(terminal, "python manage.py cloudtasks_monitor")
            assert lines_drawn(picture) == shown
            if os.environ.get("DJQ_SCREENSHOTS"):
                PICTURE.write_text(picture)

            os.write(fd, b"q")
            assert process.wait(timeout=10) == 0
    finally:
        Path(f"{held}.go").touch()
    wait_for(lambda: Success.objects.count() == 18, timeout=30)


def lines_drawn(picture: str) -> list[str]:
    """The picture's text, put back in its rows and columns from where it is drawn."""
    rows = [[" "] * COLUMNS for _ in range(LINES)]
    for text in ElementTree.fromstring(picture).iter("{http://www.w3.org/2000/svg}text"):
        row = round((float(text.attrib["y"]) - terminals.MARGIN) / terminals.CELL_HEIGHT - 0.75)
        column = round((float(text.attrib["x"]) - terminals.MARGIN) / terminals.CELL_WIDTH)
        rows[row][column : column + len(text.text or "")] = text.text or ""
    return ["".join(row).rstrip() for row in rows]
