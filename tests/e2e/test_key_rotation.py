"""SECRET_KEY rotation: tasks enqueued under the old key, delivered by the built-in
emulator to a live server that has moved on to a new one."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django_q.models import Success
from django_q.tasks import async_task

from django_q_cloudtasks.models import DeadLetter
from tests.conftest import wait_for
from tests.e2e.conftest import answers, queue_is_empty, start_command

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

NEW_KEY = "the-key-after-rotation"


def test_tasks_signed_with_a_key_in_secret_key_fallbacks_still_run(start_stack, trace):
    stack = start_stack(
        server_env={"DJQ_SECRET_KEY": NEW_KEY, "DJQ_SECRET_KEY_FALLBACKS": settings.SECRET_KEY}
    )
    task_id = async_task("tests.project.tasks.append", str(trace), "ran\n")
    wait_for(lambda: Success.objects.filter(id=task_id).exists(), timeout=30)
    assert trace.runs == ["ran"]
    wait_for(lambda: queue_is_empty(stack))


def test_without_the_old_key_they_are_rejected_once_and_kept(start_stack, trace):
    stack = start_stack(server_env={"DJQ_SECRET_KEY": NEW_KEY})
    task_id = async_task("tests.project.tasks.append", str(trace), "ran\n")
    wait_for(lambda: queue_is_empty(stack), timeout=30)  # answered 2xx: no retries follow
    assert answers(stack, at_least=1) == [200]
    (letter,) = DeadLetter.objects.all()
    assert letter.cloud_task == task_id
    assert "SECRET_KEY_FALLBACKS" in letter.reason
    assert trace.runs == []
    log = Path(stack["logs"], "server.log").read_text()
    assert log.count("kept as dead letter") == 1  # said once, loudly


def test_with_the_old_key_restored_a_replay_runs_them(start_stack, trace):
    stack = start_stack(server_env={"DJQ_SECRET_KEY": NEW_KEY})
    task_id = async_task("tests.project.tasks.append", str(trace), "ran\n")
    wait_for(lambda: DeadLetter.objects.exists(), timeout=30)
    # The project's own key (the tests' SECRET_KEY) is the old one: restored.
    replay = start_command(stack, "cloudtasks_replay", "--all")
    output, _ = replay.communicate(timeout=60)
    assert replay.returncode == 0, output.decode()
    assert b"succeeded; deleted." in output
    assert Success.objects.filter(id=task_id).exists()
    assert trace.runs == ["ran"]
    assert not DeadLetter.objects.exists()
