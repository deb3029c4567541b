"""CloudTasksBroker: what it asks of Cloud Tasks, and how it behaves when Cloud Tasks fails.

The API here is a scripted gRPC endpoint on loopback (tests/support/scripted_cloud_tasks.py),
reached through the real client library; the end-to-end tests use a real emulator.
"""

import os
import time

import grpc
import pytest
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.signing import SignedPackage
from django_q.tasks import async_task

from django_q_cloudtasks import CloudTasksBroker, wire
from django_q_cloudtasks import broker as broker_module
from django_q_cloudtasks.conf import queue_id_for, queue_settings
from django_q_cloudtasks.exceptions import EnqueueError, QueueUnavailable
from django_q_cloudtasks.gcp import client, tasks
from tests.conftest import wait_for

QUEUE = "projects/test-project/locations/europe-west1/queues/tests"


def test_enqueue_creates_an_http_task_named_after_the_django_q_id(cloud_tasks):
    task_id = async_task("math.copysign", 2, -2)
    (request,) = cloud_tasks.created()
    assert request.parent == QUEUE
    assert request.task.name == f"{QUEUE}/tasks/{task_id}"
    http = request.task.http_request
    assert (http.url, http.http_method.name) == ("https://tasks.example.com/_tasks/", "POST")
    assert http.headers["Content-Type"] == wire.PACKAGE_CONTENT_TYPE
    assert SignedPackage.loads(http.body.decode())["args"] == (2, -2)


def test_enqueue_asks_for_an_oidc_token_for_the_audience(cloud_tasks):
    async_task("math.copysign", 2, -2)
    token = cloud_tasks.created()[0].task.http_request.oidc_token
    assert token.service_account_email == "tasks@test-project.iam.gserviceaccount.com"
    assert token.audience == "https://tasks.example.com"


def test_the_dispatch_deadline_covers_the_timeout(cloud_tasks):
    async_task("math.copysign", 2, -2)  # cluster timeout: 20 s
    async_task("math.copysign", 2, -2, timeout=100)
    deadlines = [r.task.dispatch_deadline.total_seconds() for r in cloud_tasks.created()]
    assert deadlines == [35, 115]


def test_a_second_cluster_enqueues_into_its_own_queue(cloud_tasks):
    task_id = async_task("math.copysign", 2, -2, cluster="second")
    (request,) = cloud_tasks.created()
    assert (
        request.task.name
        == f"projects/test-project/locations/europe-west1/queues/second-queue/tasks/{task_id}"
    )


def test_an_explicit_broker_marks_the_package_with_its_cluster(cloud_tasks):
    async_task("math.copysign", 2, -2, broker=CloudTasksBroker("second"))
    body = cloud_tasks.created()[0].task.http_request.body.decode()
    assert SignedPackage.loads(body)["cluster"] == "second"


@pytest.mark.parametrize("cluster", ["second", "nightly"])
def test_a_list_key_changed_on_a_broker_already_made_decides_where_the_task_goes(
    cloud_tasks, cluster
):
    """As django-q's own tests, and user code, do: ``b.list_key = ...`` after get_broker()."""
    broker = get_broker()
    broker.list_key = cluster
    task_id = async_task("math.copysign", 1, -1, broker=broker)
    (request,) = cloud_tasks.created()
    assert request.parent == queue_settings(cluster).queue_path != QUEUE
    assert request.task.name == f"{request.parent}/tasks/{task_id}"
    assert SignedPackage.loads(request.task.http_request.body.decode())["cluster"] == cluster


def test_any_list_key_django_q_takes_is_a_queue(cloud_tasks):
    broker = get_broker("scheduler_test:q")
    task_id = async_task("math.copysign", 1, -1, broker=broker)
    (request,) = cloud_tasks.created()
    assert request.parent == f"{QUEUE.rsplit('/', 1)[0]}/{queue_id_for('scheduler_test:q')}"
    assert request.task.name.endswith(f"/tasks/{task_id}")


def test_transient_errors_are_retried_into_a_single_task(cloud_tasks):
    cloud_tasks.fail("CreateTask", grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    task_id = async_task("math.copysign", 2, -2)
    names = {request.task.name for request in cloud_tasks.created()}
    assert len(cloud_tasks.created()) == 3
    assert names == {f"{QUEUE}/tasks/{task_id}"}


def test_already_exists_counts_as_enqueued(cloud_tasks):
    cloud_tasks.fail("CreateTask", grpc.StatusCode.ALREADY_EXISTS)
    assert async_task("math.copysign", 2, -2)


def test_a_missing_queue_raises_an_enqueue_error_that_says_what_to_do(cloud_tasks):
    cloud_tasks.fail("CreateTask", grpc.StatusCode.NOT_FOUND)
    with pytest.raises(EnqueueError) as raised:
        async_task("math.copysign", 2, -2)
    assert raised.value.queue_path == QUEUE
    assert "Create the queue: python manage.py cloudtasks_setup" in str(raised.value)
    assert len(cloud_tasks.created()) == 1  # not retried


def test_permission_denied_names_the_roles(cloud_tasks):
    cloud_tasks.fail("CreateTask", grpc.StatusCode.PERMISSION_DENIED)
    with pytest.raises(EnqueueError, match=r"roles/cloudtasks\.enqueuer"):
        async_task("math.copysign", 2, -2)


def test_an_unreachable_service_raises_within_the_enqueue_timeout(configure):
    configure(emulator_host="127.0.0.1:9", enqueue_timeout=2)  # nothing listens on port 9
    started = time.monotonic()
    with pytest.raises(EnqueueError, match="did not answer within 2 s"):
        async_task("math.copysign", 2, -2)
    assert time.monotonic() - started < 15


def test_a_package_over_the_size_limit_is_refused_before_any_call(cloud_tasks, configure):
    configure(max_package_bytes=1000)
    with pytest.raises(EnqueueError, match="Pass a reference"):
        async_task("tests.project.tasks.echo", os.urandom(1000))
    assert cloud_tasks.calls == []


def test_delete_queue_purges_and_never_deletes_the_queue(cloud_tasks):
    CloudTasksBroker().delete_queue()
    assert cloud_tasks.methods() == ["PurgeQueue"]


def test_purging_a_queue_that_does_not_exist_purges_nothing(cloud_tasks):
    """As django-q's brokers take it: its tests purge a queue before its first task."""
    cloud_tasks.fail("PurgeQueue", grpc.StatusCode.NOT_FOUND)
    CloudTasksBroker().purge_queue()
    cloud_tasks.fail("PurgeQueue", grpc.StatusCode.PERMISSION_DENIED)
    with pytest.raises(QueueUnavailable, match="roles/cloudtasks"):
        CloudTasksBroker().purge_queue()


@pytest.mark.django_db  # a big task's payload goes with it
def test_delete_cancels_a_task_by_its_django_q_id(cloud_tasks):
    assert CloudTasksBroker().delete("abc123") is True
    assert cloud_tasks.calls[0][1].name == f"{QUEUE}/tasks/abc123"
    cloud_tasks.fail("DeleteTask", grpc.StatusCode.NOT_FOUND)
    assert CloudTasksBroker().delete("abc123") is False


def test_queue_size_reads_the_statistics_and_caches_them(cloud_tasks):
    CloudTasksBroker.forget_stats()
    cloud_tasks.tasks_count = 7
    broker = CloudTasksBroker()
    assert broker.queue_size() == 7
    cloud_tasks.tasks_count = 8
    assert broker.queue_size() == 7  # cached: qmonitor polls every second
    assert cloud_tasks.methods() == ["BetaGetQueue"]


def test_queue_size_counts_the_tasks_waiting_not_those_being_delivered(paused_cloud_tasks, target):
    """As django-q's own brokers count: a task a pusher took is no longer queued, but locked."""
    CloudTasksBroker.forget_stats()
    target.delay = 2  # the receiver takes its time answering
    first, _ = async_task("math.copysign", 1, -1), async_task("math.copysign", 1, -1)
    tasks.run_task(queue_settings(), first)
    wait_for(lambda: target.in_flight == 1)
    broker = CloudTasksBroker()
    assert (broker.queue_size(), broker.lock_size()) == (1, 1)
    wait_for(lambda: len(paused_cloud_tasks.tasks()) == 1)  # answered: done with


def test_ping_and_info(cloud_tasks):
    broker = CloudTasksBroker()
    assert broker.ping() is True
    assert broker.info() == f"Cloud Tasks {QUEUE} (emulator at {cloud_tasks.host})"
    cloud_tasks.fail("GetQueue", grpc.StatusCode.PERMISSION_DENIED)
    assert broker.ping() is False


def test_an_unreachable_service_fails_ping_and_has_no_size(configure):
    configure(emulator_host="127.0.0.1:9")  # nothing listens on port 9
    CloudTasksBroker.forget_stats()
    broker = CloudTasksBroker()
    assert broker.ping() is False
    assert broker.queue_size() is None


def test_without_credentials_ping_and_the_sizes_answer_false_and_none(
    configure, monkeypatch, caplog
):
    monkeypatch.delenv("CLOUD_TASKS_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/credentials.json")
    configure()  # Google's own Cloud Tasks, as in production
    CloudTasksBroker.forget_stats()
    broker = CloudTasksBroker()
    assert (broker.ping(), broker.queue_size(), broker.lock_size()) == (False, None, None)
    assert "No credentials to call Google with" in caplog.text


def test_status_entries_whose_time_ran_out_leave_the_list_when_one_is_written():
    cache = CloudTasksBroker().cache
    cache.set(Conf.Q_STAT, ["django_q:stat:gone", "django_q:stat:alive"], None)
    cache.set("django_q:stat:alive", "row", 60)
    try:
        assert CloudTasksBroker().get_stats("") == ["row"]
        assert cache.get(Conf.Q_STAT) == ["django_q:stat:gone", "django_q:stat:alive"]  # as read
        CloudTasksBroker().set_stat("django_q:stat:new", "new row", 60)
        assert cache.get(Conf.Q_STAT) == ["django_q:stat:alive", "django_q:stat:new"]
        assert CloudTasksBroker().get_stats("") == ["row", "new row"]
    finally:
        cache.delete_many([Conf.Q_STAT, "django_q:stat:alive", "django_q:stat:new"])


def test_dequeue_idles_and_says_why_once(monkeypatch, caplog):
    monkeypatch.setattr(broker_module, "IDLE_DEQUEUE_SECONDS", 0.05)
    CloudTasksBroker._warned_dequeue.clear()
    broker = CloudTasksBroker()
    started = time.monotonic()
    assert broker.dequeue() is None
    assert broker.dequeue() is None
    assert time.monotonic() - started >= 0.1
    warnings = [r for r in caplog.records if "push-only" in r.getMessage()]
    assert len(warnings) == 1


def test_a_broker_is_cheap_to_make_and_clients_do_not_cross_a_fork(cloud_tasks):
    client.forget()
    CloudTasksBroker()
    assert client.held() == []  # no client until one is needed
    async_task("math.copysign", 2, -2)
    assert client.held()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, b"empty" if not client.held() else b"kept")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 10) == b"empty"
