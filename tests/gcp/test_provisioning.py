"""Provisioning: each cluster's queue made as the settings say, against the built-in emulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from google.api_core import exceptions

from django_q_cloudtasks.conf import queue_settings
from django_q_cloudtasks.emulator import Emulator
from django_q_cloudtasks.emulator.state import QueueRecord
from django_q_cloudtasks.gcp.client import tasks_client
from django_q_cloudtasks.gcp.provisioning import (
    Difference,
    ProvisioningError,
    provision,
    queues_of,
)
from django_q_cloudtasks.gcp.scheduler_job import Change
from tests.support.ports import free_port, free_port_pair

PARENT = "projects/test-project/locations/europe-west1"
QUEUES = {"tests": f"{PARENT}/queues/tests", "second": f"{PARENT}/queues/second-queue"}


class CloudTasks:
    """The built-in emulator with no queue yet, and the queue calls made to its API."""

    def __init__(self, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
        self.emulator = emulator
        self.client = tasks_client(emulator.address)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        for method in ("get_queue", "create_queue", "update_queue"):
            monkeypatch.setattr(self.client, method, self._recorded(method))

    @classmethod
    @contextmanager
    def started(
        cls, configure: Callable[..., None], monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[CloudTasks]:
        with Emulator(port=free_port_pair()) as emulator:
            configure(emulator_host=emulator.address)
            yield cls(emulator, monkeypatch)

    def _recorded(self, method: str) -> Callable[..., Any]:
        call = getattr(self.client, method)

        def record(**request: Any) -> Any:
            self.calls.append((method, request))
            return call(**request)

        return record

    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]

    def queue(self, cluster: str) -> QueueRecord:
        """The queue as the emulator holds it, read past the API."""
        return self.emulator.store.get_queue(QUEUES[cluster])

    def names(self) -> list[str]:
        """The queues the emulator holds."""
        return [queue.name for queue in self.emulator.store.list_queues(PARENT)]

    def existing(self, cluster: str, *, paused: bool = False) -> QueueRecord:
        """The cluster's queue, made beforehand with Cloud Tasks' defaults."""
        self.emulator.ensure_queue(QUEUES[cluster])
        if paused:
            self.emulator.store.set_state(QUEUES[cluster], "PAUSED")
        return self.queue(cluster)


@pytest.fixture
def cloud_tasks(
    configure: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> Iterator[CloudTasks]:
    with CloudTasks.started(configure, monkeypatch) as running:
        yield running


OPTIONS = {
    "rate_limits": {"max_dispatches_per_second": 10, "max_concurrent_dispatches": 50},
    "retry_config": {
        "min_backoff": 0.5,
        "max_backoff": 600,
        "max_doublings": 4,
        "max_retry_duration": 86400,
    },
}


def test_missing_queues_are_created_as_the_settings_say(cloud_tasks, configure):
    configure(queue_options=OPTIONS)
    for cluster in QUEUES:
        result = provision(queue_settings(cluster))
        assert (result.queue_path, result.action) == (QUEUES[cluster], Change.CREATED)
        assert all(change.current is None for change in result.differences)
        queue = cloud_tasks.queue(cluster)
        assert (queue.rate.max_dispatches_per_second, queue.rate.max_concurrent_dispatches) == (
            10,
            50,
        )
        retry = queue.retry
        assert (retry.min_backoff, retry.max_backoff, retry.max_doublings) == (0.5, 600, 4)
        assert (retry.max_retry_duration, retry.max_attempts) == (86400, -1)
        assert queue.state == "RUNNING"


def test_a_second_run_finds_nothing_to_do_and_changes_nothing(cloud_tasks, configure):
    configure(queue_options=OPTIONS)
    provision(queue_settings())
    cloud_tasks.calls.clear()
    result = provision(queue_settings())
    assert (result.action, result.differences) == (Change.UNCHANGED, ())
    assert cloud_tasks.methods() == ["get_queue"]


def test_durations_are_compared_as_seconds_despite_rounding(cloud_tasks, configure):
    configure(queue_options={"retry_config": {"min_backoff": 0.1234567}})
    provision(queue_settings())
    assert cloud_tasks.queue("tests").retry.min_backoff == 0.123457  # microseconds
    assert provision(queue_settings()).action == Change.UNCHANGED


def test_a_changed_setting_is_that_one_difference_and_update(cloud_tasks, configure):
    provision(queue_settings())
    configure(queue_options={"retry_config": {"max_backoff": 600}})
    cloud_tasks.calls.clear()
    result = provision(queue_settings())
    assert result.action == Change.UPDATED
    assert result.differences == (Difference("retry_config.max_backoff", 3600, 600),)
    assert cloud_tasks.methods() == ["get_queue", "update_queue"]
    assert cloud_tasks.calls[1][1]["update_mask"] == {"paths": ["retry_config.max_backoff"]}
    assert cloud_tasks.queue("tests").retry.max_backoff == 600


def test_an_existing_queue_gets_an_unlimited_attempt_count(cloud_tasks):
    cloud_tasks.existing("tests")
    result = provision(queue_settings())
    assert result.differences == (Difference("retry_config.max_attempts", 100, -1),)
    assert cloud_tasks.queue("tests").retry.max_attempts == -1


def test_a_dry_run_changes_nothing(cloud_tasks, configure):
    result = provision(queue_settings(), dry_run=True)
    assert result.action == Change.CREATED
    assert cloud_tasks.names() == []

    cloud_tasks.existing("tests")
    configure(queue_options=OPTIONS)
    result = provision(queue_settings(), dry_run=True)
    assert result.action == Change.UPDATED
    assert len(result.differences) == 7
    assert cloud_tasks.queue("tests").retry.max_backoff == 3600
    assert "update_queue" not in cloud_tasks.methods()


def test_a_paused_queue_is_updated_and_stays_paused(cloud_tasks):
    cloud_tasks.existing("tests", paused=True)
    result = provision(queue_settings())
    assert (result.action, result.paused) == (Change.UPDATED, True)
    assert cloud_tasks.queue("tests").state == "PAUSED"
    assert provision(queue_settings()).paused is True


def test_a_value_cloud_tasks_does_not_keep_is_an_error(cloud_tasks, configure):
    # The emulator reads a zero as "the default" even with an update mask.
    configure(queue_options={"retry_config": {"max_doublings": 0}})
    with pytest.raises(
        ProvisioningError, match=r"what was asked\): retry_config\.max_doublings: 16 -> 0\."
    ):
        provision(queue_settings())
    assert cloud_tasks.methods() == ["get_queue", "create_queue", "update_queue"]
    assert cloud_tasks.calls[2][1]["update_mask"] == {"paths": ["retry_config.max_doublings"]}


def test_clusters_sharing_a_queue_must_want_the_same_of_it(configure):
    shared = {"second": {"cloud_tasks": {"queue": "tests"}}}
    configure(q_cluster={"ALT_CLUSTERS": shared})
    clusters = [queue_settings("tests"), queue_settings("second")]
    assert queues_of(clusters) == [queue_settings("tests")]

    shared["second"]["cloud_tasks"]["queue_options"] = {"retry_config": {"max_backoff": 60}}
    configure(q_cluster={"ALT_CLUSTERS": shared})
    with pytest.raises(ProvisioningError, match="'tests' and 'second' share the queue"):
        queues_of([queue_settings("tests"), queue_settings("second")])


def test_no_answer_names_the_queue_and_the_emulator(configure):
    nobody = f"127.0.0.1:{free_port()}"
    configure(emulator_host=nobody, enqueue_timeout=0.5)
    with pytest.raises(ProvisioningError) as raised:
        provision(queue_settings())
    assert raised.value.resource == QUEUES["tests"]
    message = str(raised.value)
    assert message.startswith(f"Could not read Cloud Tasks queue {QUEUES['tests']}: ")
    assert message.endswith(f"is the emulator at {nobody} running?")


def test_a_refusal_says_which_role_is_missing(cloud_tasks, monkeypatch):
    def refuse(**request: Any) -> Any:
        raise exceptions.PermissionDenied("The principal lacks cloudtasks.queues.create.")

    monkeypatch.setattr(cloud_tasks.client, "create_queue", refuse)
    with pytest.raises(ProvisioningError) as raised:
        provision(queue_settings())
    assert str(raised.value).startswith(
        f"Could not create Cloud Tasks queue {QUEUES['tests']}: "
        "The principal lacks cloudtasks.queues.create. "
    )
    assert "roles/cloudtasks.queueAdmin" in str(raised.value)


def test_a_name_deleted_lately_is_explained(cloud_tasks):
    cloud_tasks.existing("tests")
    cloud_tasks.emulator.store.delete_queue(QUEUES["tests"])
    with pytest.raises(ProvisioningError) as raised:
        provision(queue_settings())
    assert isinstance(raised.value.__cause__, exceptions.FailedPrecondition)
    assert "keeps the name for up to 7 days" in str(raised.value)
