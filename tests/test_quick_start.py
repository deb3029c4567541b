"""The README's quick start, as a new user follows it: a brand-new project, each block
pasted as it is written, and one task to its Success row, with nothing else done."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.support.ports import free_port, free_port_pair

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Quick start, on your machine"


def quick_start_blocks() -> list[tuple[str, str]]:
    """The fenced blocks of the README's quick start, as (language, code)."""
    text = (ROOT / "README.md").read_text()
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.DOTALL)


def a_new_users_environment() -> dict[str, str]:
    """This interpreter's tools first on PATH, and nothing of the test project's set-up."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DJQ_", "CLOUD_TASKS_", "PYTHON"))
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_the_readmes_blocks_are_the_ones_this_test_runs():
    assert [language for language, _ in quick_start_blocks()] == [
        "bash",
        "python",
        "python",
        "bash",
        "bash",
    ]


def test_the_quick_start_pasted_into_a_new_project_reaches_a_success_row(tmp_path):
    create, settings, urls, start, enqueue = (code for _, code in quick_start_blocks())
    env = a_new_users_environment()
    # The package is installed here already (and not on PyPI's index for this checkout).
    create = "\n".join(line for line in create.splitlines() if not line.startswith("pip "))
    subprocess.run(["bash", "-euc", create], cwd=tmp_path, env=env, check=True, timeout=120)
    project = tmp_path / "mysite"
    with (project / "mysite" / "settings.py").open("a") as file:
        file.write("\n" + settings)
    with (project / "mysite" / "urls.py").open("a") as file:
        file.write("\n" + urls)

    # The documented addresses, moved to free ports so that the test can run beside others.
    emulator, server = f"127.0.0.1:{free_port_pair()}", f"127.0.0.1:{free_port()}"
    script = (start + enqueue).replace("127.0.0.1:8123", emulator)
    script = script.replace("runserver &", f"runserver {server} &")
    (project / "mysite" / "settings.py").write_text(
        (project / "mysite" / "settings.py").read_text().replace("127.0.0.1:8000", server)
    )
    output = tmp_path / "output.txt"
    with output.open("w") as out:
        shell = subprocess.Popen(
            ["bash", "-euc", script],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the emulator and runserver it leaves running go with it
        )
        try:
            returncode = shell.wait(timeout=180)
            assert returncode == 0, output.read_text()
            # While the emulator and the server still run: the cache they share shows the
            # server that ran the task to cloudtasks_monitor, a process of its own.
            monitored = receivers_listed(project, env | {"CLOUD_TASKS_EMULATOR_HOST": emulator})
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(shell.pid, signal.SIGTERM)
    printed = output.read_text()
    assert "2" in printed.splitlines(), printed  # what result() returned
    with sqlite3.connect(project / "db.sqlite3") as database:
        rows = database.execute("SELECT func, success FROM django_q_task").fetchall()
    assert rows == [("math.floor", 1)]
    assert len(monitored) == 1, monitored
    assert monitored[0].split()[-2] == "1", monitored  # Done: the one task


def receivers_listed(project: Path, env: dict[str, str], timeout: float = 15) -> list[str]:
    """The receiver rows of ``cloudtasks_monitor --once``, once one has a task done: a
    server publishes its row as a task starts and again within a second of its end."""
    deadline = time.monotonic() + timeout
    while True:
        monitor = subprocess.run(
            [sys.executable, "manage.py", "cloudtasks_monitor", "--once"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert monitor.returncode == 0, monitor.stdout + monitor.stderr
        shown = monitor.stdout.splitlines()
        header = next((i for i, line in enumerate(shown) if line.startswith("Host")), None)
        rows = [line for line in shown[header + 1 :] if line] if header is not None else []
        if any(row.split()[-2] != "0" for row in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)
