"""qinfo and qmonitor list the processes of a live gunicorn that run tasks, through a Redis
cache the server and the test share (``shared_cache``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command
from django_q.conf import Conf
from django_q.monitor_terminal import monitor
from django_q.status import Status
from django_q.tasks import async_task, result

from django_q_cloudtasks.receiver.status import rows
from tests.conftest import wait_for
from tests.receiver.test_status import QMONITOR_WORKS, flat

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def two_rows(in_flight: int) -> list[Status] | None:
    """The two workers' rows once each shows ``in_flight`` tasks."""
    listed = rows()
    return listed if [row.task_q_size for row in listed] == [in_flight] * 2 else None


def test_qinfo_and_qmonitor_list_each_gunicorn_worker_running_tasks(
    shared_cache, start_stack, tmp_path, capsys
):
    # shared_cache first: it empties the cache after start_stack has stopped the server.
    start_stack(workers=2, server_env=shared_cache)
    trace = tmp_path / "runs"
    task_ids = [async_task("tests.project.tasks.run_until_released", str(trace)) for _ in range(2)]
    # Sync workers run one request each: two tasks running at once are in both workers.
    wait_for(lambda: trace.exists() and len(trace.read_text().splitlines()) == 2, timeout=30)
    try:
        busy = wait_for(lambda: two_rows(in_flight=1))
        assert len({row.pid for row in busy}) == 2
        assert {str(row.status) for row in busy} == {str(Conf.WORKING)}

        capsys.readouterr()
        call_command("qinfo")
        assert "Clusters2Workers2Restarts0" in flat(capsys.readouterr().out)
        if QMONITOR_WORKS:
            shown = monitor(run_once=True)
            screen = capsys.readouterr().out
            assert sorted(row.task_q_size for row in shown) == [1, 1]
            assert all(row.cluster_id[-8:] in screen for row in busy)
    finally:
        Path(f"{trace}.go").touch()
    assert [result(task_id, wait=30_000) for task_id in task_ids] == ["released"] * 2

    idle = wait_for(lambda: two_rows(in_flight=0))
    assert {row.pid for row in idle} == {row.pid for row in busy}
    assert {str(row.status) for row in idle} == {str(Conf.IDLE)}
    assert [row.finished for row in idle] == [1, 1]
    capsys.readouterr()
    call_command("qinfo")
    assert "Clusters2Workers2Restarts0" in flat(capsys.readouterr().out)
