"""Dead letters are replayed through the receiver once their cause is fixed (the old key
restored, the missing code deployed), from the admin or ``cloudtasks_replay``; a letter
is deleted when its delivery is done with, and stays, saying why, when it is not."""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django_q.models import Failure, Schedule, Success

from django_q_cloudtasks import payloads, wire
from django_q_cloudtasks.broker import CloudTasksBroker
from django_q_cloudtasks.models import DeadLetter, Payload
from django_q_cloudtasks.receiver.deadletters import replay
from django_q_cloudtasks.receiver.delivery import MISSING_CODE_RETRIES
from django_q_cloudtasks.scheduling import Slot
from django_q_cloudtasks.wire import PACKAGE_CONTENT_TYPE, WAKE_UP_CONTENT_TYPE
from tests.conftest import assert_rejected
from tests.support.packages import (
    a_package_from_the_newer_revision,
    make_task,
    sign,
    signed_with,
    stored,
)

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "admin:django_q_cloudtasks_deadletter_changelist"


@pytest.fixture
def rotated_away(deliver, settings):
    """A task signed with a key the receiver lost in a rotation: a dead letter. Returns the
    letter and the task; ``settings.SECRET_KEY_FALLBACKS = ["old-key"]`` restores it."""

    def reject(**options) -> tuple[DeadLetter, dict]:
        task = make_task("math.copysign", 2, -2, **options)
        body = signed_with("old-key", task)
        settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "new-key", []
        letter = assert_rejected(deliver(body, headers={"X-CloudTasks-TaskName": task["id"]}))
        return letter, task

    return reject


def test_a_dead_letter_whose_key_is_back_runs_and_is_deleted(rotated_away, settings):
    letter, task = rotated_away()
    settings.SECRET_KEY_FALLBACKS = ["old-key"]
    replayed = replay(letter)
    assert (replayed.result.http_status, replayed.result.status) == (200, "succeeded")
    assert replayed.deleted
    assert Success.objects.get(id=task["id"]).result == -2.0
    assert not DeadLetter.objects.exists()


def test_a_job_clusters_dead_letter_goes_back_to_its_queue_under_a_name_of_its_own(
    rotated_away, settings, paused_cloud_tasks, configure
):
    long = {
        "timeout": 60,
        "cloud_tasks": {"target": "cloud_run_job", "job": "worker", "queue": "tests"},
    }
    configure(q_cluster={"ALT_CLUSTERS": {"long": long}})
    letter, task = rotated_away(cluster="long")
    settings.SECRET_KEY_FALLBACKS = ["old-key"]
    replayed = replay(letter)
    # Cloud Tasks looks after the execution that runs it: it is delivered again, now.
    assert (replayed.result.status, replayed.deleted) == ("forwarded", True)
    (cloud_task,) = paused_cloud_tasks.tasks()
    assert cloud_task.name.rsplit("/", 1)[1].startswith(f"{task['id']}-replayed-")
    assert cloud_task.http_request.headers["Content-Type"] == wire.REFERENCE_CONTENT_TYPE
    assert Payload.objects.filter(task_id=task["id"]).exists()


def test_a_dead_letter_that_still_cannot_run_stays_and_says_why(rotated_away):
    letter, task = rotated_away()
    replayed = replay(letter)
    assert replayed.result.rejected
    assert not replayed.deleted
    assert "SECRET_KEY_FALLBACKS" in replayed.result.error
    assert list(DeadLetter.objects.values_list("pk", flat=True)) == [letter.pk]  # no second one
    assert not Success.objects.filter(id=task["id"]).exists()


def test_a_replayed_task_due_later_runs_now(rotated_away, settings):
    letter, task = rotated_away(run_after=timezone.now() + timedelta(days=2))
    settings.SECRET_KEY_FALLBACKS = ["old-key"]
    assert replay(letter).result.status == "succeeded"
    assert Success.objects.filter(id=task["id"]).exists()


def test_a_replayed_task_that_ran_already_is_not_run_again(rotated_away, settings, deliver):
    letter, task = rotated_away()
    settings.SECRET_KEY_FALLBACKS = ["old-key"]
    assert deliver(signed_with("old-key", task)).json()["status"] == "succeeded"
    assert replay(letter).result.status == "duplicate"
    assert not DeadLetter.objects.exists()


def test_a_replayed_task_that_fails_with_attempts_left_stays(deliver, settings, tmp_path):
    task = make_task("tests.project.tasks.count_and_fail", str(tmp_path / "runs"))
    settings.SECRET_KEY = "new-key"
    letter = assert_rejected(deliver(signed_with("old-key", task)))
    settings.SECRET_KEY_FALLBACKS = ["old-key"]
    result = replay(letter).result
    assert (result.http_status, result.status) == (500, "retry")
    assert Failure.objects.get(id=task["id"]).attempt_count == 1
    assert DeadLetter.objects.filter(pk=letter.pk).exists()  # to be replayed again


def test_missing_code_once_deployed_runs_on_replay(deliver, newer_code):
    body = a_package_from_the_newer_revision(newer_code, lacks="module")
    letter = assert_rejected(deliver(body, retries=MISSING_CODE_RETRIES - 1))
    assert replay(letter).result.rejected  # still missing: kept
    sys.modules["newer_revision"] = newer_code  # deployed
    assert replay(letter).result.status == "succeeded"
    assert not DeadLetter.objects.exists()


def test_a_wake_up_is_replayed_into_its_slots_task(paused_cloud_tasks):
    schedule = Schedule.objects.create(func="math.floor", args="1.5", next_run=timezone.now())
    slot = Slot(schedule.pk, schedule.next_run)
    letter = DeadLetter.objects.create(
        received=timezone.now(),
        path="/_tasks/schedule/",
        reason="as an older revision rejected it",
        content_type=WAKE_UP_CONTENT_TYPE,
        body=slot.sign(),
    )
    assert replay(letter).result.status == "enqueued"
    assert [t.name.rsplit("/", 1)[1] for t in paused_cloud_tasks.tasks()] == [slot.task_id]
    assert not DeadLetter.objects.exists()


def test_a_big_task_is_kept_with_its_package_which_outlives_the_payload(
    deliver, newer_code, paused_cloud_tasks
):
    """A task over 1 MiB naming missing code: the letter keeps the package, not the
    reference, so a replay after the payload was pruned (32 days) still runs it."""
    task = make_task("tests.project.tasks.echo", newer_code.Report(), os.urandom(1_100_000))
    async_task_of(task)
    (cloud_task,) = paused_cloud_tasks.tasks()
    del sys.modules["newer_revision"]
    letter = assert_rejected(
        deliver(
            cloud_task.http_request.body,
            content_type=wire.REFERENCE_CONTENT_TYPE,
            retries=MISSING_CODE_RETRIES - 1,
        )
    )
    assert letter.content_type == PACKAGE_CONTENT_TYPE
    Payload.objects.all().delete()
    sys.modules["newer_revision"] = newer_code
    assert replay(letter).result.status == "succeeded"


def test_a_reference_whose_package_is_gone_is_kept(monkeypatch):
    reference = stored("gone", "a package")
    Payload.objects.all().delete()
    monkeypatch.setattr(payloads, "COMMIT_WAIT_SECONDS", 0)  # long gone, not yet to come
    letter = DeadLetter.objects.create(
        received=timezone.now(),
        path="/_tasks/",
        reason="kept as a reference",
        content_type=wire.REFERENCE_CONTENT_TYPE,
        body=reference,
    )
    replayed = replay(letter)
    assert replayed.result.status == "abandoned"
    assert not replayed.deleted
    assert DeadLetter.objects.filter(pk=letter.pk).exists()  # all that is left of it


def test_a_letter_whose_path_moved_is_replayed_by_its_content_type(paused_cloud_tasks):
    schedule = Schedule.objects.create(func="math.floor", args="1.5", next_run=timezone.now())
    slot = Slot(schedule.pk, schedule.next_run)
    letter = DeadLetter.objects.create(
        received=timezone.now(),
        path="/admin/",  # another view now
        reason="as an older revision rejected it",
        content_type=WAKE_UP_CONTENT_TYPE,
        body=slot.sign(),
    )
    assert replay(letter).result.status == "enqueued"


def test_a_replay_inside_a_transaction_is_refused_before_anything_runs(rotated_away, settings):
    letter, task = rotated_away()
    settings.SECRET_KEY_FALLBACKS = ["old-key"]
    with transaction.atomic(), pytest.raises(RuntimeError, match=r"outside transaction\.atomic"):
        replay(letter)
    assert not Success.objects.filter(id=task["id"]).exists()
    assert DeadLetter.objects.filter(pk=letter.pk).exists()


def async_task_of(task: dict) -> None:
    """Enqueue a package as async_task would."""
    CloudTasksBroker().enqueue(sign(task).decode())


# The command


def test_the_command_replays_the_letters_named(rotated_away, settings, capsys):
    first, _ = rotated_away()
    second, _ = rotated_away()
    settings.SECRET_KEY_FALLBACKS = ["old-key"]
    call_command("cloudtasks_replay", str(first.pk))
    assert f"Dead letter {first.pk}: succeeded; deleted." in capsys.readouterr().out
    assert list(DeadLetter.objects.values_list("pk", flat=True)) == [second.pk]


def test_the_command_replays_all_and_fails_naming_those_kept(rotated_away, settings, capsys):
    kept, _ = rotated_away()
    settings.SECRET_KEY_FALLBACKS = ["old-key"]
    ran, _ = rotated_away()  # the receiver lost the old key again meanwhile...
    settings.SECRET_KEY_FALLBACKS = ["old-key"]
    DeadLetter.objects.filter(pk=kept.pk).update(body=b"not a package")  # ...and one is junk
    with pytest.raises(CommandError, match="1 dead letter"):
        call_command("cloudtasks_replay", "--all")
    output = capsys.readouterr()
    assert f"Dead letter {ran.pk}: succeeded; deleted." in output.out
    assert f"Dead letter {kept.pk}: rejected; kept: " in output.err
    assert list(DeadLetter.objects.values_list("pk", flat=True)) == [kept.pk]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [([], "by id, or pass --all"), (["1", "--all"], "by id, or pass --all"), (["999"], "999")],
)
def test_the_command_refuses_to_guess(arguments, message):
    with pytest.raises(CommandError, match=message):
        call_command("cloudtasks_replay", *arguments)


# The admin action


def test_the_admin_replays_the_selected_letters(rotated_away, settings, client, admin_user):
    letter, task = rotated_away()
    settings.SECRET_KEY_FALLBACKS = ["old-key"]
    client.force_login(admin_user)
    response = client.post(
        reverse(CHANGELIST),
        {"action": "replay", "_selected_action": [letter.pk]},
        follow=True,
    )
    assert f"Dead letter {letter.pk}: succeeded; deleted." in response.content.decode()
    assert Success.objects.filter(id=task["id"]).exists()
    assert not DeadLetter.objects.exists()


def test_replaying_needs_the_permission_to_steer_tasks(rotated_away, settings, client):
    from django.contrib.auth.models import Permission, User

    letter, task = rotated_away()
    settings.SECRET_KEY_FALLBACKS = ["old-key"]
    viewer = User.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_deadletter"))
    client.force_login(viewer)
    listing = client.get(reverse(CHANGELIST)).content.decode()
    assert "Replay selected dead letters" not in listing
    client.post(reverse(CHANGELIST), {"action": "replay", "_selected_action": [letter.pk]})
    assert DeadLetter.objects.filter(pk=letter.pk).exists()
    assert not Success.objects.filter(id=task["id"]).exists()
