"""``manage.py cloudtasks_setup``: every cluster's queue, created or updated, and what it printed."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from django_q_cloudtasks.conf import queue_id_for, queue_settings
from tests.gcp.test_provisioning import QUEUES
from tests.support.ports import free_port

TESTS, SECOND = QUEUES["tests"], QUEUES["second"]
CREATED_WITH_DEFAULTS = """\
  rate_limits.max_dispatches_per_second: 500
  rate_limits.max_concurrent_dispatches: 1000
  retry_config.max_attempts: -1
  retry_config.min_backoff: 0.1s
  retry_config.max_backoff: 3600s
  retry_config.max_doublings: 16
  retry_config.max_retry_duration: 0s
"""


def run(*args: str) -> str:
    out = StringIO()
    call_command("cloudtasks_setup", *args, stdout=out)
    return out.getvalue()


def test_it_creates_the_queue_of_every_cluster(cloud_tasks):
    assert run() == (
        f"{TESTS}: created\n{CREATED_WITH_DEFAULTS}{SECOND}: created\n{CREATED_WITH_DEFAULTS}"
    )
    assert cloud_tasks.queue("tests").retry.max_attempts == -1
    assert cloud_tasks.queue("second").retry.max_attempts == -1


def test_a_cluster_with_shards_gets_each_of_its_queues_with_its_options(cloud_tasks, configure):
    configure(shards=3, queue_options={"retry_config": {"max_backoff": 60}})
    printed = run("--cluster", "tests")
    assert [line for line in printed.splitlines() if not line.startswith(" ")] == [
        f"{TESTS}: created",
        f"{TESTS}-1: created",
        f"{TESTS}-2: created",
    ]
    assert printed.count("retry_config.max_backoff: 60s") == 3
    assert run("--cluster", "tests").count("up to date") == 3


def test_a_second_run_is_up_to_date_and_updates_nothing(cloud_tasks):
    run()
    cloud_tasks.calls.clear()
    assert run() == f"{TESTS}: up to date\n{SECOND}: up to date\n"
    assert cloud_tasks.methods() == ["get_queue", "get_queue"]


def test_a_changed_setting_is_shown_and_made(cloud_tasks, configure):
    run()
    configure(queue_options={"rate_limits": {"max_dispatches_per_second": 2.5}})
    assert run() == (
        f"{TESTS}: updated\n  rate_limits.max_dispatches_per_second: 500 -> 2.5\n"
        f"{SECOND}: updated\n  rate_limits.max_dispatches_per_second: 500 -> 2.5\n"
    )
    assert cloud_tasks.queue("second").rate.max_dispatches_per_second == 2.5


def test_a_dry_run_shows_the_changes_and_makes_none(cloud_tasks, configure):
    assert run("--dry-run") == (
        f"{TESTS}: would create\n{CREATED_WITH_DEFAULTS}"
        f"{SECOND}: would create\n{CREATED_WITH_DEFAULTS}"
    )
    assert cloud_tasks.names() == []

    run()
    configure(queue_options={"retry_config": {"max_backoff": 600}})
    assert run("--dry-run") == (
        f"{TESTS}: would update\n  retry_config.max_backoff: 3600s -> 600s\n"
        f"{SECOND}: would update\n  retry_config.max_backoff: 3600s -> 600s\n"
    )
    assert cloud_tasks.queue("tests").retry.max_backoff == 3600
    assert "update_queue" not in cloud_tasks.methods()


def test_a_paused_queue_stays_paused_and_says_so(cloud_tasks):
    cloud_tasks.existing("tests", paused=True)
    cloud_tasks.existing("second")
    expected_change = "  retry_config.max_attempts: 100 -> -1\n"
    assert run() == (
        f"{TESTS}: updated (paused)\n{expected_change}{SECOND}: updated\n{expected_change}"
    )
    assert cloud_tasks.queue("tests").state == "PAUSED"
    assert run() == f"{TESTS}: up to date (paused)\n{SECOND}: up to date\n"


def test_cluster_picks_the_queues(cloud_tasks):
    assert run("--cluster", "second").startswith(f"{SECOND}: created\n")
    assert cloud_tasks.names() == [SECOND]
    assert run("--cluster", "second", "--cluster", "tests") == (
        f"{SECOND}: up to date\n{TESTS}: created\n{CREATED_WITH_DEFAULTS}"
    )


def test_an_unknown_cluster_is_an_error_listing_the_known_ones(cloud_tasks):
    with pytest.raises(
        CommandError, match="Unknown cluster 'nope'; the clusters are 'tests', 'second'"
    ):
        run("--cluster", "nope")
    assert cloud_tasks.calls == []


def test_clusters_wanting_different_things_of_one_queue_are_an_error(cloud_tasks, configure):
    second = {"queue": "tests", "queue_options": {"retry_config": {"max_backoff": 60}}}
    configure(q_cluster={"ALT_CLUSTERS": {"second": {"cloud_tasks": second}}})
    with pytest.raises(CommandError, match="'tests' and 'second' share the queue"):
        run()
    assert cloud_tasks.calls == []


def test_an_api_error_names_each_queue_and_fails(configure):
    nobody = f"127.0.0.1:{free_port()}"
    configure(emulator_host=nobody, enqueue_timeout=0.5)
    with pytest.raises(CommandError) as raised:
        run()
    lines = str(raised.value).splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [
        f"Could not read Cloud Tasks queue {TESTS}",
        f"Could not read Cloud Tasks queue {SECOND}",
    ]
    assert all(line.endswith(f"is the emulator at {nobody} running?") for line in lines)


def test_a_cluster_whose_name_is_no_queue_id_gets_the_queue_made_from_it(cloud_tasks, configure):
    configure(q_cluster={"ALT_CLUSTERS": {"long_jobs": {}}})
    queue = queue_settings("long_jobs").queue_path
    assert queue.rsplit("/", 1)[1] == queue_id_for("long_jobs")
    assert run("--cluster", "long_jobs") == f"{queue}: created\n{CREATED_WITH_DEFAULTS}"
    assert cloud_tasks.names() == [queue]
