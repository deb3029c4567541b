"""The admin: the Cloud Tasks queues page in the Django Q section, this package's rows, and
django-q's own task lists working with the broker."""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_q.humanhash import humanize, uuid
from django_q.models import Failure, Schedule, Success, Task
from django_q.signing import SignedPackage
from django_q.tasks import async_task

from django_q_cloudtasks import async_task_after
from django_q_cloudtasks.broker import CloudTasksBroker
from django_q_cloudtasks.conf import queue_settings
from django_q_cloudtasks.models import DeadLetter, Payload, Receipt
from tests.conftest import PausedCloudTasks, wait_for
from tests.support.packages import make_task, sign

pytestmark = pytest.mark.django_db

QUEUES = "admin:django_q_cloudtasksqueue_changelist"
QUEUE_PATHS = "projects/test-project/locations/europe-west1/queues"


def url(action: str, cluster: str = "tests", task_id: str | None = None) -> str:
    args = [cluster] if task_id is None else [cluster, task_id]
    return reverse(f"admin:django_q_cloudtasksqueue_{action}", args=args)


def section(html: str, css_class: str) -> str:
    """The part of an admin page inside the first element with this class, roughly: up to
    the next module."""
    start = html.index(f'class="{css_class}')
    end = html.find('class="app-', start + 1)
    return html[start : end if end > 0 else len(html)]


def queue_section(html: str, cluster: str) -> str:
    start = html.index(f'id="queue-{cluster}"')
    end = html.find('id="queue-', start + 1)
    return html[start : end if end > 0 else len(html)]


def task_row(html: str, task_id: str) -> str:
    start = html.index(f'id="task-{task_id}"')
    return html[start : html.index("</tr>", start)]


def queue_state(cloud_tasks: PausedCloudTasks, cluster: str = "tests") -> str:
    queue = cloud_tasks.client.get_queue(name=cloud_tasks.QUEUES[cluster])
    return type(queue).State(queue.state).name


@pytest.fixture
def staff(client: Client) -> Callable[..., Client]:
    """``staff(*permissions)``: the test client, logged in as staff with these permissions."""

    def login(*permissions: str) -> Client:
        user = User.objects.create_user("staff", is_staff=True)
        for permission in permissions:
            app_label, codename = permission.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        client.force_login(user)
        return client

    return login


# Where the page is, and who sees it


def test_the_index_lists_the_queues_page_in_the_django_q_section(admin_client):
    page = reverse(QUEUES)
    index = admin_client.get(reverse("admin:index")).content.decode()
    django_q = section(index, "app-django_q module")
    assert f'<a href="{page}">Cloud Tasks queues</a>' in django_q
    assert "Failed tasks" in django_q  # beside django-q's own lists
    assert page not in section(index, "app-django_q_cloudtasks module")
    app_index = admin_client.get(reverse("admin:app_list", args=["django_q"])).content.decode()
    assert f'<a href="{page}"' in app_index


def test_staff_without_django_q_permissions_neither_see_nor_use_it(staff, paused_cloud_tasks):
    client = staff("django_q_cloudtasks.view_deadletter")
    index = client.get(reverse("admin:index")).content.decode()
    assert "Dead letters" in index  # what they may see, they see
    assert reverse(QUEUES) not in index
    assert client.get(reverse(QUEUES)).status_code == 403
    assert client.post(url("resume")).status_code == 403
    assert queue_state(paused_cloud_tasks) == "PAUSED"


def test_anonymous_is_sent_to_log_in(client, paused_cloud_tasks):
    for response in (client.get(reverse(QUEUES)), client.post(url("resume"))):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    assert queue_state(paused_cloud_tasks) == "PAUSED"


def test_a_viewer_sees_the_queues_without_buttons_and_cannot_steer(staff, paused_cloud_tasks):
    task_id = async_task("tests.project.tasks.echo", 1)
    client = staff("django_q.view_failure")
    page = client.get(reverse(QUEUES)).content.decode()
    assert humanize(task_id) in page
    assert "Run now" not in page
    assert "Resume" not in page
    assert client.post(url("resume")).status_code == 403
    assert client.post(url("delete", task_id=task_id)).status_code == 403
    assert queue_state(paused_cloud_tasks) == "PAUSED"
    assert len(paused_cloud_tasks.tasks()) == 1


def test_change_schedule_permission_steers_the_queues(staff, paused_cloud_tasks):
    client = staff("django_q.change_schedule")
    assert "Resume tests" in client.get(reverse(QUEUES)).content.decode()
    assert client.post(url("resume")).status_code == 302
    assert queue_state(paused_cloud_tasks) == "RUNNING"


# What the page shows


def test_the_page_shows_each_queue_its_settings_and_its_waiting_tasks(
    admin_client, paused_cloud_tasks
):
    first = async_task("tests.project.tasks.echo", 1)
    second = async_task("math.copysign", 1, -1, cluster="second")
    response = admin_client.get(reverse(QUEUES))
    assert response.status_code == 200
    html = response.content.decode()
    assert "<title>Cloud Tasks queues | " in html
    assert f'<a href="{reverse("admin:app_list", args=["django_q"])}">Django Q</a>' in html

    tests = queue_section(html, "tests")
    assert "queue tests &middot;" in tests
    # State, then tasks waiting:
    assert re.search(r'<td><strong class="state-PAUSED">PAUSED</strong></td>\s*<td>1</td>', tests)
    assert "500 tasks/s, bursts of 100, at most 1000 at once" in tests
    assert "3 attempts; timeout 20 s" in tests  # django-q's own settings of the cluster
    assert f"<strong>{humanize(first)}</strong>" in tests
    assert "<code>tests.project.tasks.echo</code>" in tests
    assert "Resume tests" in tests
    assert url("run", task_id=first) in tests
    assert url("delete", task_id=first) in tests
    assert humanize(second) not in tests

    other = queue_section(html, "second")
    assert "queue second-queue" in other
    assert "2 attempts; timeout 10 s" in other
    assert f"<strong>{humanize(second)}</strong>" in other
    assert "<code>math.copysign</code>" in other


def test_a_cluster_whose_name_is_no_queue_id_shows_the_queue_made_from_it(
    admin_client, paused_cloud_tasks, configure
):
    configure(q_cluster={"ALT_CLUSTERS": {"long_jobs": {}}})
    queue = queue_settings("long_jobs").queue
    paused_cloud_tasks.emulator.ensure_queue(queue_settings("long_jobs").queue_path)
    html = admin_client.get(reverse(QUEUES)).content.decode()
    assert f"Cluster long_jobs: queue {queue} &middot;" in queue_section(html, "long_jobs")


def test_a_queue_that_cannot_be_read_shows_why_and_the_others_still_show(
    admin_client, paused_cloud_tasks, configure
):
    alt = {"second": {"cloud_tasks": {"queue": "second-queue", "emulator_host": "127.0.0.1:9"}}}
    configure(q_cluster={"ALT_CLUSTERS": alt})
    task_id = async_task("tests.project.tasks.echo", 1)
    html = admin_client.get(reverse(QUEUES)).content.decode()
    assert '<p class="errornote">Could not read queue projects/test-project/locations/' in (
        queue_section(html, "second")
    )
    assert "is the emulator at 127.0.0.1:9 running?" in queue_section(html, "second")
    assert humanize(task_id) in queue_section(html, "tests")


def test_run_now_says_it_runs_a_task_due_later_at_once(admin_client, paused_cloud_tasks):
    later = async_task_after(timedelta(days=2), "tests.project.tasks.echo", 1)
    now = async_task("tests.project.tasks.echo", 2)
    html = admin_client.get(reverse(QUEUES)).content.decode()
    assert "Run now runs it now, ahead of its time, and not again then." in task_row(html, later)
    assert "ahead of its time" not in task_row(html, now)


def test_a_big_task_is_listed_without_loading_its_package(admin_client, paused_cloud_tasks):
    """Its package, megabytes in the database, is neither read, hashed nor unpickled: the
    reference names the task."""
    task_id = async_task("tests.project.tasks.digest", os.urandom(1_100_000))
    with CaptureQueriesContext(connection) as queries:
        html = admin_client.get(reverse(QUEUES)).content.decode()
    row = task_row(html, task_id)
    assert f"<strong>{humanize(task_id)}</strong>" in row
    assert "<code>tests.project.tasks.digest</code>" in row
    assert not [query for query in queries if Payload._meta.db_table in query["sql"]]


def test_a_task_naming_code_this_revision_lacks_is_listed_as_unreadable(
    admin_client, paused_cloud_tasks, newer_code
):
    """During a rollout the page still shows, the newer revision's task among the others."""
    CloudTasksBroker().enqueue(
        sign(make_task("tests.project.tasks.echo", newer_code.Report())).decode()
    )
    del sys.modules["newer_revision"]  # the admin runs on the older revision
    html = admin_client.get(reverse(QUEUES)).content.decode()
    assert 'class="task-unreadable"' in queue_section(html, "tests")
    assert "names code this revision lacks" in queue_section(html, "tests")


def test_task_names_and_functions_are_escaped(admin_client, paused_cloud_tasks):
    async_task("<b>func</b>", q_options={"task_name": "<script>alert(1)</script>"})
    html = admin_client.get(reverse(QUEUES)).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;func&lt;/b&gt;" in html
    assert "<script>alert" not in html
    assert "<b>func" not in html


# Steering: POST only


def test_get_changes_nothing(admin_client, paused_cloud_tasks):
    task_id = async_task("tests.project.tasks.echo", 1)
    for action, task in (("resume", None), ("pause", None), ("run", task_id), ("delete", task_id)):
        assert admin_client.get(url(action, task_id=task)).status_code == 405
    assert admin_client.get(reverse(QUEUES)).status_code == 200
    assert queue_state(paused_cloud_tasks) == "PAUSED"
    (cloud_task,) = paused_cloud_tasks.tasks()
    assert cloud_task.dispatch_count == 0


def test_posts_need_the_csrf_token(admin_user, paused_cloud_tasks):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(url("resume")).status_code == 403
    assert queue_state(paused_cloud_tasks) == "PAUSED"


def test_resume_and_pause_change_the_queue_and_say_so(admin_client, paused_cloud_tasks, caplog):
    caplog.set_level("INFO", logger="django_q_cloudtasks")
    response = admin_client.post(url("resume", cluster="second"), follow=True)
    assert response.redirect_chain == [(f"{reverse(QUEUES)}#queue-second", 302)]
    assert queue_state(paused_cloud_tasks, "second") == "RUNNING"
    assert queue_state(paused_cloud_tasks, "tests") == "PAUSED"
    html = response.content.decode()
    assert (
        '<li class="success">Resumed projects/test-project/locations/europe-west1/queues/second-queue.</li>'
        in html
    )
    assert "Pause second-queue" in queue_section(html, "second")
    assert "admin, in the admin: Resumed projects/" in caplog.text  # who did what, logged

    response = admin_client.post(url("pause", cluster="second"), follow=True)
    assert queue_state(paused_cloud_tasks, "second") == "PAUSED"
    assert "its tasks wait until it is resumed" in response.content.decode()


def test_resume_of_a_sharded_cluster_resumes_and_names_every_shard(
    admin_client, sharded_cloud_tasks
):
    response = admin_client.post(url("resume"), follow=True)
    queues = [f"{QUEUE_PATHS}/tests", f"{QUEUE_PATHS}/tests-1", f"{QUEUE_PATHS}/tests-2"]
    assert [sharded_cloud_tasks.client.get_queue(name=q).state.name for q in queues] == [
        "RUNNING"
    ] * 3
    assert f"Resumed {QUEUE_PATHS}/tests and its 2 shards." in response.content.decode()


def test_run_now_dispatches_a_waiting_task(admin_client, paused_cloud_tasks, target):
    task_id = async_task("tests.project.tasks.echo", 1)
    waiting = async_task("tests.project.tasks.echo", 2)
    (cloud_task,) = [t for t in paused_cloud_tasks.tasks() if t.name.endswith(task_id)]
    response = admin_client.post(url("run", task_id=task_id), follow=True)
    assert f"Dispatched task {task_id} of " in response.content.decode()
    wait_for(lambda: len(paused_cloud_tasks.tasks()) == 1)  # answered 200: done
    assert [d.body for d in target.deliveries] == [cloud_task.http_request.body]
    assert paused_cloud_tasks.tasks()[0].name.endswith(waiting)
    assert queue_state(paused_cloud_tasks) == "PAUSED"


def test_delete_removes_a_waiting_task_and_a_second_delete_warns(admin_client, paused_cloud_tasks):
    task_id = async_task("tests.project.tasks.echo", 1)
    response = admin_client.post(url("delete", task_id=task_id), follow=True)
    assert f"Deleted task {task_id} of " in response.content.decode()
    assert paused_cloud_tasks.tasks() == []

    response = admin_client.post(url("delete", task_id=task_id), follow=True)
    assert '<li class="warning">' in response.content.decode()
    assert f"Task {task_id} is no longer in " in response.content.decode()


def test_cancel_deletes_a_waiting_task_so_that_it_never_runs(admin_client, paused_cloud_tasks):
    task_id = async_task("tests.project.tasks.echo", 1)
    page = admin_client.get(reverse(QUEUES)).content.decode()
    assert f'action="{url("cancel", task_id=task_id)}"' in page
    response = admin_client.post(url("cancel", task_id=task_id), follow=True)
    assert (
        f'<li class="success">Task {task_id}: deleted from its queue: it will not run.</li>'
        in response.content.decode()
    )
    assert paused_cloud_tasks.tasks() == []
    assert Receipt.objects.get(task_id=task_id).cancelled is not None


def test_cancel_of_a_delayed_tasks_hop_deletes_the_hop(admin_client, paused_cloud_tasks):
    task_id = async_task_after(timedelta(days=45), "tests.project.tasks.echo", 1)
    (hop,) = paused_cloud_tasks.tasks()
    hop_id = hop.name.rsplit("/", 1)[1]
    assert hop_id.startswith(f"{task_id}-")  # a hop, on its way to the task's time
    page = admin_client.get(reverse(QUEUES)).content.decode()
    assert f'<input type="hidden" name="cloud_task" value="{hop_id}">' in page
    response = admin_client.post(
        url("cancel", task_id=task_id), {"cloud_task": hop_id}, follow=True
    )
    assert f"Task {task_id}: deleted from its queue: it will not run." in response.content.decode()
    assert paused_cloud_tasks.tasks() == []


def test_a_task_running_now_says_where_and_cancel_asks_it_to_stop(admin_client, paused_cloud_tasks):
    task_id = async_task("tests.project.tasks.echo", 1)
    Receipt.objects.claim(task_id, "tests", "a-delivery", timedelta(minutes=5))
    section = queue_section(admin_client.get(reverse(QUEUES)).content.decode(), "tests")
    assert '<strong class="running">Running</strong> in a receiver' in section
    response = admin_client.post(url("cancel", task_id=task_id), follow=True)
    assert f"Task {task_id}: asked to stop: cancelled() is true" in response.content.decode()


def test_a_job_clusters_task_running_now_names_its_execution(
    admin_client, paused_cloud_tasks, configure
):
    long = {
        "timeout": 60,
        "cloud_tasks": {"target": "cloud_run_job", "job": "worker", "queue": "tests"},
    }
    configure(q_cluster={"ALT_CLUSTERS": {"long": long}})
    task_id = async_task("tests.project.tasks.echo", 1, cluster="long")
    Receipt.objects.claim(task_id, "long", "the-launcher", timedelta(minutes=5))
    execution = "projects/test-project/locations/europe-west1/jobs/worker/executions/worker-a1b2c"
    Receipt.objects.note_execution(task_id, "the-launcher", execution)
    section = queue_section(admin_client.get(reverse(QUEUES)).content.decode(), "long")
    assert "Running</strong> in execution <code>worker-a1b2c</code>" in section


def test_an_action_on_an_unreachable_queue_shows_the_error(admin_client, configure):
    configure(emulator_host="127.0.0.1:9")
    response = admin_client.post(url("pause"), follow=True)
    assert response.status_code == 200
    assert '<li class="error">Could not pause queue projects/test-project/' in (
        response.content.decode()
    )


def test_an_unknown_cluster_is_not_found(admin_client, paused_cloud_tasks):
    assert admin_client.post(url("pause", cluster="nope")).status_code == 404


@pytest.mark.parametrize("task_id", ["a\nCRITICAL forged", "a b", "x" * 501])
def test_a_task_id_cloud_tasks_would_not_make_is_not_found(admin_client, task_id, caplog):
    path = reverse(QUEUES) + f"tests/tasks/{quote(task_id)}/delete/"
    assert admin_client.post(path).status_code == 404
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("django_q_cloudtasks")]
    assert not [message for message in ours if "CRITICAL forged" in message]


# This package's rows


def test_dead_letters_are_listed_and_shown_with_their_body_cut_to_size(admin_client):
    now = timezone.now()
    text = DeadLetter.objects.create(
        received=now,
        path="/_tasks/",
        queue="q",
        cloud_task="ct-1",
        reason="bad <sig>",
        body=b"A" * 5000,
    )
    binary = DeadLetter.objects.create(
        received=now, path="/_tasks/", reason="not ascii", body=b"\xff\x00abc"
    )
    listing = admin_client.get(reverse("admin:django_q_cloudtasks_deadletter_changelist"))
    assert "ct-1" in listing.content.decode()
    assert "bad &lt;sig&gt;" in listing.content.decode()

    shown = admin_client.get(
        reverse("admin:django_q_cloudtasks_deadletter_change", args=[text.pk])
    ).content.decode()
    assert "A" * 2048 + "</pre>5,000 bytes, the first 2,048 shown" in shown
    assert "A" * 2049 not in shown
    shown = admin_client.get(
        reverse("admin:django_q_cloudtasks_deadletter_change", args=[binary.pk])
    ).content.decode()
    assert "ff 00 61 62 63</pre>5 bytes" in shown
    assert admin_client.get(reverse("admin:django_q_cloudtasks_deadletter_add")).status_code == 403


def test_payloads_are_listed_with_their_size(admin_client):
    payload = Payload.objects.create(task_id="big-one", package="x" * 3000, created=timezone.now())
    listing = admin_client.get(reverse("admin:django_q_cloudtasks_payload_changelist"))
    assert "big-one" in listing.content.decode()
    assert "3,000 bytes" in listing.content.decode()
    detail = admin_client.get(
        reverse("admin:django_q_cloudtasks_payload_change", args=[payload.pk])
    )
    assert "3,000 bytes" in detail.content.decode()
    assert "x" * 100 not in detail.content.decode()  # the package itself is not shown
    delete = reverse("admin:django_q_cloudtasks_payload_delete", args=[payload.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert Payload.objects.filter(pk=payload.pk).exists()


def test_receipts_are_listed_read_only(admin_client):
    now = timezone.now()
    receipt = Receipt.objects.create(
        task_id="done-one",
        cluster="tests",
        state=Receipt.State.DONE,
        holder="h",
        lease_until=now,
        updated=now,
        deliveries=2,
    )
    listing = admin_client.get(reverse("admin:django_q_cloudtasks_receipt_changelist"))
    assert "done-one" in listing.content.decode()
    change = reverse("admin:django_q_cloudtasks_receipt_change", args=[receipt.pk])
    assert admin_client.get(change).status_code == 200
    assert admin_client.post(change, {"state": "retry"}).status_code == 403
    receipt.refresh_from_db()
    assert receipt.state == Receipt.State.DONE


def test_the_queues_page_needs_no_migration():
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)  # exits 1 on changes
    assert "No changes detected" in out.getvalue()


# django-q's own admin, with this broker


def failed_task(cluster: str | None) -> Task:
    name, task_id = uuid()
    return Failure.objects.create(
        id=task_id,
        name=name,
        func="tests.project.tasks.echo",
        args=(7,),
        kwargs={"note": "again"},
        cluster=cluster,
        started=timezone.now() - timedelta(seconds=1),
        stopped=timezone.now(),
        success=False,
        result="boom",
    )


def test_django_qs_own_lists_render(admin_client):
    failure = failed_task("second")
    Schedule.objects.create(func="math.floor", args="1.5", next_run=timezone.now())
    for name in ("success", "failure", "schedule"):
        response = admin_client.get(reverse(f"admin:django_q_{name}_changelist"))
        assert response.status_code == 200, name
    failures = admin_client.get(reverse("admin:django_q_failure_changelist")).content.decode()
    assert failure.name in failures


@pytest.mark.parametrize("cluster", ["second", None])
def test_resubmitting_a_failed_task_enqueues_it_in_its_clusters_queue(
    admin_client, paused_cloud_tasks, cluster
):
    failure = failed_task(cluster)
    landed = cluster or "tests"  # the cluster whose queue it goes to: the main one, by name
    response = admin_client.post(
        reverse("admin:django_q_failure_changelist"),
        {"action": "resubmit_task", "_selected_action": [failure.pk]},
    )
    assert response.status_code == 302
    (cloud_task,) = paused_cloud_tasks.tasks(landed)
    package = SignedPackage.loads(cloud_task.http_request.body.decode())
    assert (package["func"], package["args"], package["kwargs"]) == (
        "tests.project.tasks.echo",
        (7,),
        {"note": "again"},
    )
    assert package["cluster"] == landed
    assert not Failure.objects.filter(pk=failure.pk).exists()  # django-q's FailAdmin drops it
    other = "tests" if landed == "second" else "second"
    assert paused_cloud_tasks.tasks(other) == []


def test_resubmitting_a_success_enqueues_it_again(admin_client, paused_cloud_tasks):
    done = Success.objects.create(
        id="c" * 32,
        name="done",
        func="math.floor",
        args=(1.5,),
        kwargs={},
        cluster="second",
        started=timezone.now(),
        stopped=timezone.now(),
        success=True,
        result=1,
    )
    admin_client.post(
        reverse("admin:django_q_success_changelist"),
        {"action": "resubmit_task", "_selected_action": [done.pk]},
    )
    (cloud_task,) = paused_cloud_tasks.tasks("second")
    assert SignedPackage.loads(cloud_task.http_request.body.decode())["func"] == "math.floor"
    assert queue_settings("second").queue_path in cloud_task.name
