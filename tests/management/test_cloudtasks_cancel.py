"""``manage.py cloudtasks_cancel``: cancel() for each task named, and what became of it."""

import pytest
from django.core.management import call_command
from django_q.tasks import async_task

from tests.support.packages import make_task

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_cancels_each_task_and_says_what_became_of_it(paused_cloud_tasks, deliver, capsys):
    waiting = async_task("tests.project.tasks.echo", 1)
    finished = make_task("tests.project.tasks.echo", 1)
    deliver(finished)
    call_command("cloudtasks_cancel", waiting, finished["id"])
    assert capsys.readouterr().out.splitlines() == [
        f"Task {waiting}: deleted from its queue: it will not run.",
        f"Task {finished['id']}: had finished: nothing to cancel.",
    ]
    assert paused_cloud_tasks.tasks() == []
