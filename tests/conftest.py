from __future__ import annotations

import copy
import sys
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client

from django_q_cloudtasks.conf import queue_settings
from django_q_cloudtasks.receiver.auth import certificates
from django_q_cloudtasks.wire import PACKAGE_CONTENT_TYPE
from tests.support.packages import sign
from tests.support.scripted_cloud_tasks import ScriptedCloudTasks
from tests.support.tokens import CertsServer, SigningKey


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey.generate("test-key-1")


@pytest.fixture(scope="session")
def certs_server(signing_key: SigningKey) -> Iterator[CertsServer]:
    server = CertsServer([signing_key]).start()
    yield server
    server.stop()


@pytest.fixture
def configure(settings: Any) -> Callable[..., None]:
    """Change keys of Q_CLUSTER["cloud_tasks"] (or, with ``q_cluster=``, of Q_CLUSTER) for one test."""

    def change(q_cluster: dict[str, Any] | None = None, **cloud_tasks: Any) -> None:
        value = copy.deepcopy(settings.Q_CLUSTER)
        value.update(q_cluster or {})
        value["cloud_tasks"].update(cloud_tasks)
        settings.Q_CLUSTER = value

    return change


@pytest.fixture
def cloud_tasks(configure: Callable[..., None]) -> Iterator[ScriptedCloudTasks]:
    """A Cloud Tasks API that records each call and fails on cue (``fail``)."""
    server = ScriptedCloudTasks().start()
    # Emulator mode reaches the scripted endpoint over plain gRPC; https and tokens stay on.
    configure(emulator_host=server.host)
    yield server
    server.stop()


@pytest.fixture
def newer_code() -> Iterator[types.ModuleType]:
    """A module ``newer_revision`` with a class ``Report``, as only a newer revision of the
    code has it: there while the test signs a package holding a Report
    (``a_package_from_the_newer_revision``), gone after."""
    module = types.ModuleType("newer_revision")
    module.Report = type("Report", (), {"__module__": "newer_revision"})  # type: ignore[attr-defined]
    sys.modules["newer_revision"] = module
    yield module
    sys.modules.pop("newer_revision", None)


@pytest.fixture
def verifying(configure: Callable[..., None], certs_server: CertsServer) -> CertsServer:
    """The receiver verifies tokens against the test's certificate endpoint."""
    configure(certs_url=certs_server.url, verify_token=True)
    certificates.clear()
    return certs_server


@pytest.fixture
def deliver(client: Client, signing_key: SigningKey, verifying: CertsServer) -> Callable[..., Any]:
    """POST a task to the receiver as Cloud Tasks would: a valid token, the retry count, and
    any other ``headers``."""

    def post(
        task: dict[str, Any] | bytes,
        *,
        token: str | None = "valid",
        retries: int = 0,
        path: str = "/_tasks/",
        content_type: str = PACKAGE_CONTENT_TYPE,
        headers: dict[str, str] | None = None,
    ) -> Any:
        headers = {"X-CloudTasks-TaskRetryCount": str(retries), **(headers or {})}
        if token == "valid":
            token = signing_key.token()
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        body = sign(task) if isinstance(task, dict) else task
        return client.post(path, data=body, content_type=content_type, headers=headers)

    return post


def assert_rejected(response: Any, reason: str = "") -> Any:
    """The delivery was answered 2xx "rejected" (no retry), kept as a dead letter, run never."""
    from django_q_cloudtasks.models import DeadLetter

    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["status"] == "rejected"
    assert reason in answer["error"]
    letter = DeadLetter.objects.get(pk=answer["dead_letter"])
    assert letter.reason == answer["error"]
    return letter


def logged_by_the_package_alone(caplog: pytest.LogCaptureFixture, level: int) -> list[Any]:
    """The package's records at ``level`` or above, of which there must be one at least;
    and Django's request logger said nothing ("Internal Server Error: /_tasks/" ...)."""
    assert [r.getMessage() for r in caplog.records if r.name == "django.request"] == []
    said = [
        r for r in caplog.records if r.name.startswith("django_q_cloudtasks") and r.levelno >= level
    ]
    assert said, "the package logged nothing of it"
    return said


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll until ``condition()`` is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {condition}")
        time.sleep(interval)


class PausedCloudTasks:
    """The built-in emulator, in-process, holding the project's queues paused: what was
    enqueued stays there to be looked at."""

    QUEUES = {
        "tests": "projects/test-project/locations/europe-west1/queues/tests",
        "second": "projects/test-project/locations/europe-west1/queues/second-queue",
    }

    def __init__(self, emulator: Any) -> None:
        from django_q_cloudtasks.gcp.client import tasks_client

        self.emulator = emulator
        self.client = tasks_client(emulator.address)
        for queue in self.QUEUES.values():
            emulator.ensure_queue(queue)
            self.client.pause_queue(name=queue)

    def tasks(self, cluster: str = "tests") -> list[Any]:
        """The queue's tasks, bodies included, oldest schedule_time first."""
        listed = self.client.list_tasks(
            request={"parent": self.QUEUES[cluster], "response_view": "FULL"}
        )
        return sorted(listed, key=lambda task: (task.schedule_time, task.name))


@pytest.fixture
def target(configure: Callable[..., None]) -> Iterator[Any]:
    """Where the queues deliver: an endpoint on loopback that records each request."""
    from tests.support.target import Target

    server = Target().start()
    configure(url=server.url)
    yield server
    server.stop()


@pytest.fixture
def unreachable_second_queue(configure: Callable[..., None]) -> str:
    """The second cluster's queue is behind an emulator address nothing answers at; the
    address is returned."""
    from tests.support.ports import free_port

    unreachable = f"127.0.0.1:{free_port()}"
    second = {"cloud_tasks": {"queue": "second-queue", "emulator_host": unreachable}}
    configure(q_cluster={"ALT_CLUSTERS": {"second": second}})
    return unreachable


@pytest.fixture
def paused_cloud_tasks(configure: Callable[..., None]) -> Iterator[PausedCloudTasks]:
    """Enqueueing goes to the emulator; the receiver still takes the tests' own tokens."""
    from django_q_cloudtasks.emulator import Emulator
    from tests.support.ports import free_port_pair
    from tests.support.tokens import ISSUER

    with Emulator(port=free_port_pair()) as emulator:
        configure(emulator_host=emulator.address, issuers=[ISSUER])
        yield PausedCloudTasks(emulator)


@pytest.fixture
def sharded_cloud_tasks(
    paused_cloud_tasks: PausedCloudTasks, configure: Callable[..., None]
) -> PausedCloudTasks:
    """``paused_cloud_tasks``, with the main cluster's tasks spread over three queues: tests,
    tests-1 and tests-2, each paused."""
    configure(shards=3)
    for queue_path in queue_settings().queue_paths[1:]:
        paused_cloud_tasks.emulator.ensure_queue(queue_path)
        paused_cloud_tasks.client.pause_queue(name=queue_path)
    return paused_cloud_tasks


@pytest.fixture
def app_engine_instance(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Make this process an App Engine instance of ``service`` (its runtime's variables set,
    Cloud Run's not), whose metadata server answers nothing at once."""
    from django_q_cloudtasks import environment
    from django_q_cloudtasks.conf import queue_settings, receiver_settings
    from tests.support.ports import free_port

    def become(service: str = "default", *, standard: bool = True) -> None:
        for name in (*environment.CLOUD_RUN_MARKERS, "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"):
            monkeypatch.delenv(name, raising=False)
        for name, value in (("GAE_SERVICE", service), ("GAE_VERSION", "v1"), ("GAE_INSTANCE", "i")):
            monkeypatch.setenv(name, value)
        if standard:
            monkeypatch.setenv("GAE_ENV", "standard")
        else:
            monkeypatch.delenv("GAE_ENV", raising=False)
        monkeypatch.setenv("GCE_METADATA_HOST", f"127.0.0.1:{free_port()}")  # refused
        for cache in (environment.metadata, queue_settings, receiver_settings):
            cache.cache_clear()

    yield become
    for cache in (environment.metadata, queue_settings, receiver_settings):
        cache.cache_clear()


@pytest.fixture
def app_engine_cloud_tasks(configure: Callable[..., None]) -> Iterator[PausedCloudTasks]:
    """As ``paused_cloud_tasks``, with the App Engine cluster "worker" (its tasks routed to
    the service "worker"), whose queue is "second-queue"."""
    from django_q_cloudtasks.emulator import Emulator
    from tests.support.ports import free_port, free_port_pair
    from tests.support.tokens import ISSUER

    app = f"http://127.0.0.1:{free_port()}"  # no app listens: the queues are paused
    with Emulator(port=free_port_pair(), app_engine_url=app) as emulator:
        worker = {
            "timeout": 300,
            "cloud_tasks": {"target": "app_engine", "service": "worker", "queue": "second-queue"},
        }
        configure(
            emulator_host=emulator.address,
            issuers=[ISSUER],
            q_cluster={"ALT_CLUSTERS": {"worker": worker}},
        )
        yield PausedCloudTasks(emulator)
