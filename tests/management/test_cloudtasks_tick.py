"""``manage.py cloudtasks_tick``: one scheduler pass from the command line."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.models import Schedule

pytestmark = pytest.mark.django_db(transaction=True)


def tick(*args: str) -> str:
    out = StringIO()
    call_command("cloudtasks_tick", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_it_plans_the_due_schedules_and_says_so(paused_cloud_tasks):
    Schedule.objects.create(func="math.floor", next_run=timezone.now())
    Schedule.objects.create(func="math.floor", next_run=timezone.now() + timedelta(minutes=5))
    assert tick() == "1 schedule(s) due: 1 planned now, 0 planned before.\n"
    assert tick() == "1 schedule(s) due: 0 planned now, 1 planned before.\n"
    assert len(paused_cloud_tasks.tasks()) == 1


def test_the_lookahead_can_be_widened(paused_cloud_tasks):
    Schedule.objects.create(func="math.floor", next_run=timezone.now() + timedelta(minutes=5))
    assert tick("--lookahead", "600").startswith("1 schedule(s) due: 1 planned now")


def test_it_fails_when_cloud_tasks_cannot_be_reached(configure):
    configure(emulator_host="127.0.0.1:9", enqueue_timeout=1)
    Schedule.objects.create(func="math.floor", next_run=timezone.now())
    with pytest.raises(CommandError, match="1 schedule"):
        tick()
