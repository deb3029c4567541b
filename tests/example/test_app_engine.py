"""The example on App Engine: ``app.yaml`` and ``worker.yaml`` agree with what its
settings want there, and with what App Engine needs of a receiver."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import override_settings

from django_q_cloudtasks.conf import queue_settings
from django_q_cloudtasks.targets import AppEngineRouting

EXAMPLE = Path(__file__).resolve().parents[2] / "example"


@pytest.fixture(scope="module")
def q_cluster() -> dict[str, Any]:
    """The example's Q_CLUSTER as its settings make it in an App Engine instance."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("K_SERVICE", "CLOUD_RUN_JOB"):
            patch.delenv(name, raising=False)
        for name, value in (
            ("GAE_SERVICE", "default"),
            ("GAE_VERSION", "v1"),
            ("GAE_INSTANCE", "i"),
        ):
            patch.setenv(name, value)
        settings = runpy.run_path(str(EXAMPLE / "demo" / "settings.py"))
    q_cluster: dict[str, Any] = settings["Q_CLUSTER"]
    q_cluster["cloud_tasks"].update(project="my-project", location="europe-west1")
    return q_cluster


def service(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLE / name).read_text())  # type: ignore[no-any-return]


def test_each_cluster_goes_to_a_service_that_lets_its_tasks_run_long_enough(q_cluster):
    with override_settings(Q_CLUSTER=q_cluster):
        demo, long = queue_settings("demo"), queue_settings("long")
    assert demo.app_engine == AppEngineRouting("default", None, "automatic")
    assert long.app_engine == AppEngineRouting("worker", None, "basic")
    assert "automatic_scaling" in service("app.yaml")
    worker = service("worker.yaml")
    assert (worker["service"], "basic_scaling" in worker) == ("worker", True)


def test_the_receiver_neither_redirects_nor_asks_for_a_login(q_cluster):
    for name in ("app.yaml", "worker.yaml"):
        handlers = service(name)["handlers"]
        receiver = next(h for h in handlers if "/_tasks/".startswith(h["url"].removesuffix(".*")))
        assert not {"secure", "login"} & set(receiver), name


def test_both_services_run_sync_gunicorn_workers_with_no_timeout_of_their_own():
    for name in ("app.yaml", "worker.yaml"):
        words = service(name)["entrypoint"].split()
        assert words[:2] == ["gunicorn", "demo.wsgi"], name
        assert words[words.index("--timeout") + 1] == "0", name
        assert words[words.index("--threads") + 1] == "1", name
