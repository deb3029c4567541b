"""Duplicate deliveries on demand: every attempt sent several times, as Cloud Tasks'
at-least-once delivery sometimes does."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import wait_for
from tests.emulator.conftest import QUEUE


@pytest.mark.parametrize("emulator_options", [{"duplicates": 5}])
def test_copies_of_an_attempt_arrive_at_once(api, create, target):
    target.delay = 0.3
    create("twin")
    wait_for(lambda: len([d for d in target.deliveries if d.finished]) == 5)
    assert target.most_in_flight == 5
    assert {d.header("X-CloudTasks-TaskName") for d in target.deliveries} == {"twin"}
    assert {d.header("X-CloudTasks-TaskRetryCount") for d in target.deliveries} == {"0"}
    wait_for(lambda: not list(api.list_tasks(parent=QUEUE)))


@pytest.mark.parametrize("emulator_options", [{"duplicates": 4, "duplicates_at_once": False}])
def test_copies_of_an_attempt_arrive_one_after_another(api, create, target):
    target.delay = 0.05
    create("in-turn")
    wait_for(lambda: len([d for d in target.deliveries if d.finished]) == 4)
    assert target.most_in_flight == 1
    received = [d.received for d in target.deliveries]
    finished = [d.finished for d in target.deliveries]
    assert all(later >= done for later, done in zip(received[1:], finished, strict=False))


@pytest.mark.parametrize("emulator_options", [{"duplicates": 3, "duplicates_at_once": False}])
def test_one_2xx_among_the_copies_completes_the_task(api, create, target):
    target.answer(500, 200, 500)
    create("mixed")
    wait_for(lambda: len([d for d in target.deliveries if d.finished]) == 3)
    wait_for(lambda: not list(api.list_tasks(parent=QUEUE)))
    assert len(target.deliveries) == 3  # no retry followed


def test_the_command_refuses_fewer_than_one_copy():
    with pytest.raises(CommandError, match="--duplicates must be 1 or more"):
        call_command("cloudtasks_emulator", "127.0.0.1:1", "--duplicates", "0")
