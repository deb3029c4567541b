"""With a state file, a restarted emulator has everything it had: queues, tasks, names
that are still taken, and the key that signed its tokens."""

from __future__ import annotations

import datetime
import json
import stat

import pytest
from google.api_core import exceptions

from django_q_cloudtasks.emulator import Emulator
from django_q_cloudtasks.gcp.client import tasks_client
from tests.conftest import wait_for
from tests.emulator.conftest import PARENT, QUEUE
from tests.support.ports import free_port_pair


@pytest.fixture
def state(tmp_path):
    return tmp_path / "emulator.jsonl"


def _later(seconds):
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)


def test_a_restart_loses_nothing(state, target):
    port = free_port_pair()
    with Emulator(port=port, state_path=state) as first:
        api = tasks_client(first.address)
        api.create_queue(parent=PARENT, queue={"name": QUEUE, "retry_config": {"max_attempts": 4}})
        api.pause_queue(name=QUEUE)
        for task_id in ("kept", "deleted"):
            api.create_task(
                parent=QUEUE,
                task={
                    "name": f"{QUEUE}/tasks/{task_id}",
                    "http_request": {"url": target.url, "body": b"\x00body"},
                    "schedule_time": _later(1),
                },
            )
        api.delete_task(name=f"{QUEUE}/tasks/deleted")
        kid = first.identity.kid

    with Emulator(port=port, state_path=state) as second:
        api = tasks_client(second.address)
        queue = api.get_queue(name=QUEUE)
        assert (queue.state.name, queue.retry_config.max_attempts) == ("PAUSED", 4)
        assert [t.name.rsplit("/", 1)[-1] for t in api.list_tasks(parent=QUEUE)] == ["kept"]
        with pytest.raises(exceptions.AlreadyExists):
            api.create_task(
                parent=QUEUE,
                task={"name": f"{QUEUE}/tasks/deleted", "http_request": {"url": target.url}},
            )
        assert second.identity.kid == kid
        api.resume_queue(name=QUEUE)
        delivery = wait_for(lambda: target.deliveries and target.deliveries[0])
        assert delivery.body == b"\x00body"


def test_a_line_cut_short_by_a_crash_costs_only_that_change(state):
    port = free_port_pair()
    with Emulator(port=port, state_path=state) as first:
        first.ensure_queue(QUEUE)
    with state.open("a") as journal:
        journal.write('{"kind":"task","task":{"name":')  # the process died mid-write
    with Emulator(port=port, state_path=state) as second:
        assert list(second.store.queues) == [QUEUE]


def test_a_damaged_state_file_is_refused_with_its_line_number(state):
    state.write_text('{"kind":"queue"}\n{"kind":"nonsense"}\n')
    with pytest.raises(ValueError, match="line 1"):
        Emulator(port=free_port_pair(), state_path=state)


def test_the_state_file_holding_the_signing_key_is_readable_by_its_owner_alone(state):
    state.write_text("")
    state.chmod(0o644)  # as an older version left it
    with Emulator(port=free_port_pair(), state_path=state) as emulator:
        emulator.ensure_queue(QUEUE)
        entries = [json.loads(line) for line in state.read_text().splitlines()]
        assert "key" in {entry["kind"] for entry in entries}
        assert stat.S_IMODE(state.stat().st_mode) == 0o600
