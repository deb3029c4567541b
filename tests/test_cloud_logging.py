"""Structured logs: one line per delivered task, with fields Cloud Logging indexes."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from django_q_cloudtasks.cloud_logging import (
    RECEIVER_LOGGER,
    TRACE_FIELD,
    CloudLoggingFormatter,
    trace_of,
)
from tests.conftest import logged_by_the_package_alone
from tests.support.packages import a_package_from_the_newer_revision, make_task

TRACE_HEADER = "105445aa7843bc8bf206b12000100000/1;o=1"


def formatted(record: logging.LogRecord) -> dict:
    return json.loads(CloudLoggingFormatter().format(record))


def test_a_record_becomes_one_json_object_with_cloud_loggings_own_fields():
    record = logging.makeLogRecord(
        {"name": "app", "levelno": logging.WARNING, "msg": "%s ran", "args": ("report",)}
    )
    record.created = 1_700_000_000.25
    entry = formatted(record)
    assert entry == {
        "severity": "WARNING",
        "message": "report ran",
        "time": "2023-11-14T22:13:20.250000+00:00",
        "logger": "app",
    }


def test_extra_fields_are_kept_and_values_json_cannot_hold_become_text():
    record = logging.makeLogRecord(
        {"msg": "done", "levelno": logging.INFO, "task_id": "abc", "when": Path("/tmp/x")}
    )
    entry = formatted(record)
    assert (entry["task_id"], entry["when"]) == ("abc", "/tmp/x")


def test_a_traceback_follows_the_message_where_error_reporting_reads_it():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("app").makeRecord(
            "app", logging.ERROR, __file__, 1, "failed", (), exc_info=__import__("sys").exc_info()
        )
    entry = formatted(record)
    assert entry["severity"] == "ERROR"
    assert entry["message"].startswith("failed\nTraceback")
    assert "ValueError: boom" in entry["message"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (TRACE_HEADER, {TRACE_FIELD: "projects/p/traces/105445aa7843bc8bf206b12000100000"}),
        (None, {}),
        ("", {}),
        ('"><script>/1', {}),
    ],
)
def test_the_trace_comes_from_the_cloud_trace_header(header, expected):
    assert trace_of(header, "p") == expected


def receiver_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == RECEIVER_LOGGER]


@pytest.mark.django_db(transaction=True)
def test_each_delivery_logs_one_line_with_the_tasks_fields(deliver, caplog):
    caplog.set_level(logging.INFO, logger="django_q_cloudtasks")
    task = make_task("math.floor", 2.5)
    deliver(task)
    (line,) = receiver_lines(caplog)
    entry = formatted(line)
    assert entry["severity"] == "INFO"
    assert {key: entry[key] for key in ("task_id", "task_name", "func", "queue", "cluster")} == {
        "task_id": task["id"],
        "task_name": task["name"],
        "func": "math.floor",
        "queue": "tests",
        "cluster": "tests",
    }
    assert (entry["attempt"], entry["outcome"]) == (1, "succeeded")
    assert 0 <= entry["duration_s"] < 10
    assert entry["message"].startswith(f"Task {task['name']} (math.floor) succeeded in ")


@pytest.mark.django_db(transaction=True)
def test_a_failure_logs_a_warning_with_its_attempt_and_a_duplicate_says_so(
    deliver, caplog, tmp_path
):
    caplog.set_level(logging.INFO, logger="django_q_cloudtasks")
    failing = make_task("tests.project.tasks.count_and_fail", str(tmp_path / "count"))
    deliver(failing, retries=0)
    deliver(failing, retries=1)
    succeeding = make_task("math.floor", 2.5)
    deliver(succeeding)
    deliver(succeeding)
    lines = [formatted(line) for line in receiver_lines(caplog)]
    assert [(e["outcome"], e["attempt"], e["severity"]) for e in lines] == [
        ("retry", 1, "WARNING"),
        ("retry", 2, "WARNING"),
        ("succeeded", 1, "INFO"),
        ("duplicate", 1, "INFO"),
    ]
    assert [e["cloud_tasks_retries"] for e in lines[:2]] == [0, 1]
    assert "failed in" in lines[0]["message"]
    assert "; Cloud Tasks will deliver it again: attempt 1" in lines[0]["message"]
    assert "had already run: a duplicate delivery, nothing ran" in lines[3]["message"]


@pytest.mark.django_db(transaction=True)
def test_a_retried_task_is_said_once_not_again_as_a_server_error(deliver, caplog, tmp_path):
    caplog.set_level(logging.INFO)
    failing = make_task("tests.project.tasks.count_and_fail", str(tmp_path / "count"))
    assert deliver(failing).status_code == 500
    logged_by_the_package_alone(caplog, logging.INFO)
    assert len(receiver_lines(caplog)) == 1


@pytest.mark.django_db(transaction=True)
def test_a_delivery_retried_before_its_task_could_be_read_is_said_once(deliver, newer_code, caplog):
    caplog.set_level(logging.INFO)
    assert deliver(a_package_from_the_newer_revision(newer_code, lacks="module")).status_code == 500
    (line,) = logged_by_the_package_alone(caplog, logging.INFO)
    assert (line.levelname, "newer_revision" in line.getMessage()) == ("WARNING", True)


@pytest.mark.django_db(transaction=True)
def test_a_refused_call_is_said_once_not_again_by_django(deliver, caplog):
    caplog.set_level(logging.INFO)
    assert deliver(make_task("math.floor", 1.5), token=None).status_code == 401
    (line,) = logged_by_the_package_alone(caplog, logging.INFO)
    assert line.getMessage().startswith("Refused a call to /_tasks/: ")


@pytest.mark.django_db(transaction=True)
def test_a_line_names_the_trace_of_its_request(deliver, client, caplog, signing_key):
    caplog.set_level(logging.INFO, logger="django_q_cloudtasks")
    from django_q_cloudtasks.wire import PACKAGE_CONTENT_TYPE
    from tests.support.packages import sign

    client.post(
        "/_tasks/",
        data=sign(make_task("math.floor", 2.5)),
        content_type=PACKAGE_CONTENT_TYPE,
        headers={
            "Authorization": f"Bearer {signing_key.token()}",
            "X-Cloud-Trace-Context": TRACE_HEADER,
        },
    )
    (line,) = receiver_lines(caplog)
    assert formatted(line)[TRACE_FIELD] == (
        "projects/test-project/traces/105445aa7843bc8bf206b12000100000"
    )


SCRIPT = """
import logging, sys
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django_q", "django_q_cloudtasks"],
    SECRET_KEY="not-secret",  # django-q2 1.8 reads it at import
    Q_CLUSTER={"name": "site", "broker_class": "django_q_cloudtasks.CloudTasksBroker",
               "timeout": 60, "retry": 90},
    **({"LOGGING": {"version": 1, "handlers": {"h": {"class": "logging.StreamHandler"}},
                    "root": {"handlers": ["h"], "level": "INFO"}}} if sys.argv[1] == "root" else {}),
)
import django
django.setup()
logging.getLogger("django_q_cloudtasks.receiver").info("Task x (f) succeeded in 0.001 s")
"""


@pytest.mark.parametrize(
    ("logging_setting", "line"),
    [
        ("none", "INFO django_q_cloudtasks.receiver: Task x (f) succeeded in 0.001 s"),
        ("root", "Task x (f) succeeded in 0.001 s"),  # the project's handler, in its format
    ],
)
def test_a_project_without_logging_still_sees_each_tasks_line_once(logging_setting, line):
    ran = subprocess.run(
        [sys.executable, "-c", SCRIPT, logging_setting],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert ran.returncode == 0, ran.stderr
    said = [text for text in ran.stderr.splitlines() if "Task x" in text]
    assert len(said) == 1, ran.stderr
    assert said[0].endswith(line)
