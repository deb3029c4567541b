"""A live server's log lines, written as Cloud Logging's structured JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django_q.tasks import async_task

from django_q_cloudtasks.cloud_logging import RECEIVER_LOGGER
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_live_server_writes_the_line_as_json_cloud_logging_reads(start_stack):
    stack = start_stack(server_env={"DJQ_LOG_FORMAT": "json"})
    task_id = async_task("math.floor", 2.5)
    log = Path(stack["logs"], "server.log")

    def line_of_the_task() -> dict | None:
        for text in log.read_text().splitlines():
            if text.startswith("{") and task_id in text:
                return json.loads(text)
        return None

    entry = wait_for(line_of_the_task, timeout=30)
    assert entry["logger"] == RECEIVER_LOGGER
    assert (entry["task_id"], entry["func"], entry["outcome"]) == (
        task_id,
        "math.floor",
        "succeeded",
    )
    assert entry["severity"] == "INFO"
