"""``manage.py cloudtasks_scheduler_job``: the Cloud Scheduler job that calls the tick."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from io import StringIO

import grpc
import pytest
from django.core.management import CommandError, call_command

from django_q_cloudtasks.gcp import client
from tests.support.fake_cloud_scheduler import FakeCloudScheduler

JOB = "projects/test-project/locations/europe-west1/jobs/tests-tick"


@pytest.fixture
def cloud_scheduler(monkeypatch) -> Iterator[FakeCloudScheduler]:
    server = FakeCloudScheduler().start()
    monkeypatch.setattr(client, "scheduler_client", server.client)
    yield server
    server.stop()


def run(*args: str) -> str:
    out = StringIO()
    call_command("cloudtasks_scheduler_job", *args, stdout=out)
    return out.getvalue()


def test_it_creates_a_job_that_posts_to_the_tick_every_minute_with_a_token(cloud_scheduler):
    assert run().startswith(f"Created {JOB}")
    job = cloud_scheduler.jobs[JOB]
    assert (job.schedule, job.time_zone) == ("* * * * *", "Etc/UTC")
    assert job.http_target.uri == "https://tasks.example.com/_tasks/tick/"
    assert job.http_target.http_method.name == "POST"
    token = job.http_target.oidc_token
    assert (token.service_account_email, token.audience) == (
        "tasks@test-project.iam.gserviceaccount.com",
        "https://tasks.example.com",
    )
    assert job.attempt_deadline == timedelta(seconds=60)


def test_a_second_run_changes_nothing(cloud_scheduler):
    run()
    assert run().startswith(f"Up to date: {JOB}")
    assert cloud_scheduler.methods() == ["get", "create", "get"]


def test_a_changed_setting_updates_only_what_differs(cloud_scheduler, configure):
    run()
    configure(url="https://new.example.com/_tasks/", audience="https://new.example.com")
    output = run()
    assert output.startswith(f"Updated {JOB}")
    assert (
        "'https://tasks.example.com/_tasks/tick/' -> 'https://new.example.com/_tasks/tick/'"
        in output
    )
    method, request = cloud_scheduler.calls[-1]
    assert (method, list(request.update_mask.paths)) == ("update", ["http_target"])
    assert cloud_scheduler.jobs[JOB].http_target.uri == "https://new.example.com/_tasks/tick/"
    assert cloud_scheduler.jobs[JOB].schedule == "* * * * *"


def test_a_dry_run_only_reads(cloud_scheduler):
    assert run("--dry-run").startswith(f"Would create {JOB}")
    assert cloud_scheduler.methods() == ["get"]
    assert cloud_scheduler.jobs == {}


def test_the_job_id_and_location_can_be_chosen(cloud_scheduler):
    run("--job", "nightly", "--location", "us-central1")
    assert list(cloud_scheduler.jobs) == [
        "projects/test-project/locations/us-central1/jobs/nightly"
    ]


def test_a_refusal_explains_the_roles_needed(cloud_scheduler):
    cloud_scheduler.refuse_with = grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(CommandError, match=r"roles/cloudscheduler\.admin"):
        run()


def test_without_a_service_account_there_is_no_token_to_sign(cloud_scheduler, configure):
    configure(service_account_email=None, verify_token=False)
    with pytest.raises(CommandError, match="service_account_email"):
        run()
    assert cloud_scheduler.calls == []


def test_in_emulator_mode_the_emulator_ticks_instead(cloud_scheduler, configure):
    configure(emulator_host="127.0.0.1:8123")
    assert "The emulator calls the tick itself" in run()
    assert cloud_scheduler.calls == []
