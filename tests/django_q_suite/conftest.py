"""django-q2's own test suite, run against CloudTasksBroker (see README.md here).

The test modules beside this file are django-q2's, unchanged. What makes them run here:

* the project's settings, with ``CloudTasksBroker`` as django-q's broker, sending to the
  built-in emulator (in this process), which delivers over HTTP to a live receiver
  (pytest-django's ``live_server``, a thread of this process, so that django-q's signals
  and a test's patches of ``Conf`` reach it), its ID tokens verified;
* every queue a test names exists, paused: a task waits until the test's pusher takes it;
* django-q's ``pusher``, ``worker``, ``monitor`` and ``Queue`` in each test module are
  ``tests/support/django_q_loops.py``'s, which take the task through the receiver;
* database tests are transactional, since the receiver writes from its own thread;
* the tests that cannot apply to a push broker are skipped, each with its reason
  (``NOT_APPLICABLE``).
"""

from __future__ import annotations

import copy
import importlib.metadata
from collections.abc import Iterator
from typing import Any

import pytest

from django_q_cloudtasks import broker as broker_module
from django_q_cloudtasks.conf import QueueSettings, cluster_names, queue_settings
from django_q_cloudtasks.emulator import Emulator
from tests.support.django_q_loops import CloudTasksLoops, Queue
from tests.support.ports import free_port_pair

# The django-q2 release the test modules here were copied from.
DJANGO_Q2_VERSION = "1.11.1"

# Tests that cannot apply to a push broker, each with its reason: by test, or by test
# function for all its parameters.
CLUSTER = "it starts a cluster (Cluster, Sentinel): its processes, not the tasks"
GUARD = (
    "the sentinel's guard replacing a worker whose task ran over its timeout: no worker "
    "process runs; the receiver enforces the timeout in the request (README: Timeouts)"
)
RECYCLE = "a cluster recycling its worker processes (RECYCLE, MAX_RSS): no worker process runs"
ANOTHER_BROKER = "another broker's own behaviour"
NOT_APPLICABLE: dict[str, str] = {
    "test_cluster.py::test_cluster_initial": CLUSTER,
    "test_cluster.py::TestEarlyClusterStop::test_cluster_early_stop": CLUSTER,
    "test_cluster.py::test_cluster_stop_responsive": CLUSTER,
    "test_cluster.py::test_sentinel": CLUSTER,
    "test_cluster.py::test_timeout": GUARD,
    "test_cluster.py::test_timeout_task_finishes": GUARD,
    "test_cluster.py::test_recycle": RECYCLE,
    "test_cluster.py::test_max_rss": RECYCLE,
    "test_cluster.py::test_acknowledge_failure_override": (
        "monitor() acknowledging pulled tasks to a mock broker: Cloud Tasks takes the "
        "receiver's answer as the acknowledgement (tests/test_execution.py: ack_failure)"
    ),
    "test_commands.py::test_qcluster": CLUSTER,
    "test_monitor.py::test_monitor": f"{CLUSTER}; then the ORM broker's lock size",
    "test_admin.py::test_admin_views": (
        "the ORM broker's queue (OrmQ) in the admin, which django-q registers for that "
        "broker alone (tests/test_admin.py: django-q's other pages, and Resubmit)"
    ),
    "test_brokers.py::test_redis": ANOTHER_BROKER,
    "test_brokers.py::test_custom": f"{ANOTHER_BROKER} (Redis, named as a custom broker)",
    "test_brokers.py::test_ironmq": ANOTHER_BROKER,
    "test_brokers.py::test_sqs": ANOTHER_BROKER,
    "test_brokers.py::test_orm": ANOTHER_BROKER,
    "test_brokers.py::test_mongo": ANOTHER_BROKER,
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    installed = importlib.metadata.version("django-q2")
    for item in items:
        if not item.nodeid.startswith("tests/django_q_suite/"):
            continue
        if installed != DJANGO_Q2_VERSION:
            item.add_marker(
                pytest.mark.skip(
                    reason=f"django-q2's {DJANGO_Q2_VERSION} suite; django-q2 {installed} is installed"
                )
            )
            continue
        name = item.nodeid.removeprefix("tests/django_q_suite/")
        reason = NOT_APPLICABLE.get(name) or NOT_APPLICABLE.get(name.split("[", 1)[0])
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"not for a push broker: {reason}"))
        elif item.get_closest_marker("django_db"):
            # The receiver writes from its own thread: the test must see what it wrote.
            item.add_marker(pytest.mark.django_db(transaction=True), append=False)


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    with Emulator(port=free_port_pair()) as running:
        yield running


@pytest.fixture(autouse=True)
def over_cloud_tasks(
    request: pytest.FixtureRequest,
    live_server: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    emulator: Emulator,
) -> Iterator[CloudTasksLoops]:
    """django-q's broker is Cloud Tasks, its loops go through the live receiver."""
    settings.TIME_ZONE = "Europe/Amsterdam"  # as in django-q2's test settings, which tests rely on
    q_cluster = copy.deepcopy(settings.Q_CLUSTER)
    q_cluster["cloud_tasks"].update(
        url=f"{live_server.url}/_tasks/", emulator_host=emulator.address
    )
    settings.Q_CLUSTER = q_cluster
    monkeypatch.setattr(broker_module, "STATS_TTL_SECONDS", 0.0)  # sizes read as they are

    create_task = broker_module.create_task

    def paused_queue(qs: QueueSettings) -> None:
        if emulator.ensure_queue(qs.queue_path):
            emulator.store.set_state(qs.queue_path, "PAUSED")

    def into_a_paused_queue(qs: QueueSettings, **kwargs: Any) -> bool:
        paused_queue(qs)
        return create_task(qs, **kwargs)

    for name in cluster_names():
        paused_queue(queue_settings(name))

    monkeypatch.setattr(broker_module, "create_task", into_a_paused_queue)
    loops = CloudTasksLoops(emulator.address)
    loops.connect()
    for name, replacement in (
        ("pusher", loops.pusher),
        ("worker", loops.worker),
        ("monitor", loops.monitor),
        ("Queue", Queue),
    ):
        if hasattr(request.module, name):
            monkeypatch.setattr(request.module, name, replacement)
    yield loops
    loops.disconnect()
    for name in list(emulator.store.queues):
        emulator.store.purge_queue(name)
