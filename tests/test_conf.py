"""Settings: read once, inherited by ALT_CLUSTERS, detected on Cloud Run, refused when wrong."""

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django_q.conf import Conf

from django_q_cloudtasks import environment
from django_q_cloudtasks.conf import (
    QUEUE_ID,
    QueueOptions,
    queue_id_for,
    queue_settings,
    receiver_settings,
)
from django_q_cloudtasks.exceptions import ConfigurationError
from django_q_cloudtasks.targets import AppEngineRouting


def test_the_main_cluster_uses_its_name_as_queue():
    main = queue_settings()
    assert (main.cluster, main.queue_path) == (
        "tests",
        "projects/test-project/locations/europe-west1/queues/tests",
    )
    assert main.audience == "https://tasks.example.com"


def test_an_alt_cluster_inherits_everything_but_the_queue():
    second = queue_settings("second")
    assert second.queue == "second-queue"
    assert (second.project, second.url, second.service_account_email) == (
        "test-project",
        "https://tasks.example.com/_tasks/",
        "tasks@test-project.iam.gserviceaccount.com",
    )
    assert (second.timeout, second.max_attempts) == (10, 2)


def test_a_cluster_with_shards_has_its_queue_and_numbered_ones(configure):
    configure(shards=3)
    main = queue_settings()
    parent = "projects/test-project/locations/europe-west1/queues"
    assert main.queue_ids == ("tests", "tests-1", "tests-2")
    assert main.queue_paths == tuple(f"{parent}/{queue}" for queue in main.queue_ids)
    assert main.queue_path == f"{parent}/tests"
    assert [shard.queue_paths for shard in main.shard_settings()] == [
        (path,) for path in main.queue_paths
    ]
    assert queue_settings("second").queue_ids == ("second-queue",)  # shards are not inherited


def test_a_task_goes_to_the_queue_its_name_chooses_and_the_queues_share_the_tasks(configure):
    configure(shards=4)
    main = queue_settings()
    names = [uuid.uuid4().hex for _ in range(40_000)]
    assert [main.queue_path_for(name) for name in names[:100]] == [
        main.queue_path_for(name) for name in names[:100]
    ]
    assert main.task_path(names[0]) == f"{main.queue_path_for(names[0])}/tasks/{names[0]}"
    shares = Counter(main.queue_path_for(name) for name in names)
    assert set(shares) == set(main.queue_paths)
    assert all(9_400 < count < 10_600 for count in shares.values()), shares


def test_an_unnamed_cluster_gets_a_queue_of_its_name():
    assert queue_settings("reports").queue == "reports"


@pytest.mark.parametrize(
    ("timeout", "deadline"), [(None, 600), (1, 16), (0, 15), (20, 35), (2000, 1800)]
)
def test_the_dispatch_deadline_follows_the_timeout(timeout, deadline):
    assert queue_settings().deadline_for(timeout) == deadline


def test_emulator_mode_fills_in_the_rest_and_verifies_the_emulators_tokens(configure):
    configure(
        project=None,
        location=None,
        service_account_email=None,
        emulator_host="127.0.0.1:8123",
        url="http://127.0.0.1:8000/_tasks/",
    )
    settings = queue_settings()
    assert (settings.project, settings.location) == ("local", "local")
    assert settings.service_account_email == "cloud-tasks@local.iam.gserviceaccount.com"
    receiver = receiver_settings()
    assert receiver.verify_token is True
    assert receiver.certs_url == "http://127.0.0.1:8124/certs"
    assert receiver.issuers == ("http://127.0.0.1:8124",)
    assert receiver.allowed_emails == {"cloud-tasks@local.iam.gserviceaccount.com"}


@pytest.mark.parametrize(
    ("change", "check_id", "words"),
    [
        ({"serivce_account_email": "x@y"}, "E002", "Did you mean 'service_account_email'?"),
        ({"project": None}, "E003", 'needs "project": not set, and not detected'),
        ({"queue": "bad name!"}, "E004", "invalid"),
        ({"url": "http://app.example.com/_tasks/"}, "E005", "must use https"),
        ({"url": "/_tasks/"}, "E005", "absolute"),
        ({"dispatch_deadline": 5}, "E007", "out of Cloud Tasks' range"),
        ({"dispatch_deadline": 20}, "E007", "timeout 20 s"),
        ({"service_account_email": "not-an-email"}, "E011", "not an e-mail"),
        ({"enqueue_timeout": 0}, "E011", "positive"),
        ({"max_package_bytes": 0}, "E011", "positive number of bytes"),
        ({"max_package_bytes": "32MB"}, "E011", "positive number of bytes"),
        ({"emulator_host": "http://127.0.0.1:8123"}, "E011", "HOST:PORT"),
        ({"shards": 0}, "E011", "whole number from 1 to 100, not 0"),
        ({"shards": 101}, "E011", "whole number from 1 to 100"),
        ({"shards": "4"}, "E011", "whole number from 1 to 100, not '4'"),
        ({"shards": True}, "E011", "whole number from 1 to 100"),
        ({"queue": "q" * 99, "shards": 12}, "E004", f"the last would be {'q' * 99}-11"),
    ],
)
def test_a_wrong_setting_raises_a_clear_error(configure, change, check_id, words):
    configure(**change)
    with pytest.raises(ConfigurationError) as raised:
        queue_settings()
    assert raised.value.check_id == f"django_q_cloudtasks.{check_id}"
    assert words in str(raised.value)


def test_every_missing_setting_is_named_at_once_with_the_local_hint(configure):
    configure(project=None, location=None, url=None)
    with pytest.raises(ConfigurationError) as raised:
        queue_settings()
    assert raised.value.check_id == "django_q_cloudtasks.E003"
    assert 'needs "project", "location", "url"' in str(raised.value)
    assert "CLOUD_TASKS_EMULATOR_HOST=127.0.0.1:8123" in (raised.value.hint or "")


def test_an_app_engine_cluster_is_not_told_it_lacks_a_url(configure):
    configure(project=None, url=None, target="app_engine")
    with pytest.raises(ConfigurationError) as raised:
        queue_settings()
    assert 'needs "project": not set' in str(raised.value)


def test_queue_options_default_to_cloud_tasks_own():
    assert queue_settings().queue_options == QueueOptions(
        max_dispatches_per_second=500,
        max_concurrent_dispatches=1000,
        min_backoff=0.1,
        max_backoff=3600,
        max_doublings=16,
        max_retry_duration=0,
    )


def test_an_alt_cluster_inherits_queue_options_one_by_one(configure):
    configure(
        queue_options={
            "rate_limits": {"max_dispatches_per_second": 10},
            "retry_config": {"max_backoff": 600, "max_doublings": 4},
        },
        q_cluster={
            "ALT_CLUSTERS": {
                "second": {"cloud_tasks": {"queue_options": {"retry_config": {"max_backoff": 60}}}}
            }
        },
    )
    main, second = queue_settings().queue_options, queue_settings("second").queue_options
    assert (main.max_dispatches_per_second, main.max_backoff, main.max_doublings) == (10, 600, 4)
    assert (second.max_dispatches_per_second, second.max_backoff, second.max_doublings) == (
        10,
        60,
        4,
    )


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ([], 'Q_CLUSTER["cloud_tasks"]["queue_options"] must be a dict, not [].'),
        (
            {"retry_conf": {}},
            'Unknown key \'retry_conf\' in Q_CLUSTER["cloud_tasks"]["queue_options"]. '
            "Did you mean 'retry_config'?",
        ),
        ({"rate_limits": 10}, '["queue_options"]["rate_limits"] must be a dict, not 10.'),
        ({"retry_config": {"max_backof": 60}}, "Did you mean 'max_backoff'?"),
        ({"rate_limits": {"max_burst_size": 10}}, "Known keys: max_concurrent_dispatches, "),
        *(
            ({"rate_limits": {"max_dispatches_per_second": value}}, "above 0 and at most 500")
            for value in (0, 500.5, True, "10", float("nan"))
        ),
        *(
            ({"rate_limits": {"max_concurrent_dispatches": value}}, "whole number from 1 to 5000")
            for value in (0, 5001, 2.5)
        ),
        *(
            ({"retry_config": {"min_backoff": value}}, "positive number of seconds")
            for value in (0, -1, None)
        ),
        *(
            ({"retry_config": {"max_backoff": value}}, "positive whole number of seconds")
            for value in (0, 1.5)
        ),
        ({"retry_config": {"max_doublings": -1}}, "whole number, 0 or more, not -1"),
        ({"retry_config": {"max_retry_duration": -1}}, "0 for no limit, not -1"),
        (
            {"retry_config": {"min_backoff": 120, "max_backoff": 60}},
            "max_backoff (60 s) is below min_backoff (120 s)",
        ),
        ({"retry_config": {"min_backoff": 5000}}, "max_backoff (3600 s) is below min_backoff"),
    ],
)
def test_a_wrong_queue_option_raises_a_clear_error(configure, options, words):
    configure(queue_options=options)
    with pytest.raises(ConfigurationError) as raised:
        queue_settings()
    assert raised.value.check_id == "django_q_cloudtasks.E014"
    assert words in str(raised.value)


def test_the_queues_attempt_limit_is_not_a_setting(configure):
    configure(queue_options={"retry_config": {"max_attempts": 5}})
    with pytest.raises(ConfigurationError) as raised:
        queue_settings()
    assert raised.value.check_id == "django_q_cloudtasks.E014"
    assert raised.value.message.endswith(
        '["retry_config"]["max_attempts"] cannot be set: django-q\'s Q_CLUSTER["max_attempts"] '
        "decides when a failing task stops."
    )
    assert "could drop a task django-q would still retry" in raised.value.hint


def test_an_alt_clusters_queue_options_are_checked_too(configure):
    bad = {"cloud_tasks": {"queue_options": {"retry_config": {"max_doublings": -1}}}}
    configure(q_cluster={"ALT_CLUSTERS": {"second": bad}})
    with pytest.raises(ConfigurationError) as raised:
        queue_settings("second")
    assert raised.value.check_id == "django_q_cloudtasks.E014"
    assert str(raised.value).startswith(
        'Q_CLUSTER["ALT_CLUSTERS"]["second"]["cloud_tasks"]["queue_options"]["retry_config"]'
        '["max_doublings"] must be a whole number'
    )


def test_a_timeout_beyond_what_cloud_tasks_waits_is_refused(configure):
    configure(q_cluster={"timeout": 1790})
    with pytest.raises(ConfigurationError, match="Lower the timeout to 1785 s"):
        queue_settings()


def test_endpoint_keys_belong_to_the_main_cluster(configure, settings):
    configure(q_cluster={"ALT_CLUSTERS": {"second": {"cloud_tasks": {"verify_token": False}}}})
    with pytest.raises(ConfigurationError, match="applies to the receiver endpoint") as raised:
        queue_settings("second")
    assert raised.value.check_id == "django_q_cloudtasks.E010"


def test_verification_needs_someone_allowed_to_call(configure):
    configure(service_account_email=None)
    with pytest.raises(ConfigurationError) as raised:
        receiver_settings()
    assert raised.value.check_id == "django_q_cloudtasks.E006"


@pytest.fixture
def cloud_run(monkeypatch) -> Iterator[list[str]]:
    """A metadata server on loopback, and the environment Cloud Run sets."""
    asked: list[str] = []
    answers = {
        "/computeMetadata/v1/project/project-id": "detected-project",
        "/computeMetadata/v1/project/numeric-project-id": "123456789",
        "/computeMetadata/v1/instance/region": "projects/123456789/regions/europe-west4",
    }

    class Metadata(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            if self.headers.get("Metadata-Flavor") != "Google" or self.path not in answers:
                self.send_error(404)
                return
            body = answers[self.path].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("GCE_METADATA_HOST", f"127.0.0.1:{server.server_port}")
    monkeypatch.setenv("K_SERVICE", "shop")
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    environment.metadata.cache_clear()
    yield asked
    environment.metadata.cache_clear()
    server.shutdown()
    server.server_close()


def test_project_location_and_url_are_detected_on_cloud_run(configure, cloud_run):
    configure(project=None, location=None, url=None)
    settings = queue_settings()
    assert (settings.project, settings.location) == ("detected-project", "europe-west4")
    assert settings.url == "https://shop-123456789.europe-west4.run.app/_tasks/"
    assert settings.audience == "https://shop-123456789.europe-west4.run.app"


def test_a_cloud_run_jobs_execution_detects_its_project_and_location_not_a_url(
    configure, cloud_run, monkeypatch
):
    monkeypatch.delenv("K_SERVICE")
    monkeypatch.setenv("CLOUD_RUN_JOB", "mysite-worker")
    assert environment.on_google_cloud()
    configure(project=None, location=None)
    settings = queue_settings()
    assert (settings.project, settings.location) == ("detected-project", "europe-west4")
    assert environment.detect_service_url() is None


def test_nothing_is_asked_off_google_cloud(configure, monkeypatch):
    for name in (*environment.GOOGLE_CLOUD_MARKERS, "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    assert not environment.on_google_cloud()
    environment.metadata.cache_clear()
    assert environment.detect_project() is None
    assert environment.detect_service_url() is None


# Any list_key django-q takes is a cluster


@pytest.mark.parametrize(
    "name", ["scheduler_test:q", "long_jobs", "über", ":::", "x" * 300, "a.b c/d"]
)
def test_a_cluster_name_that_is_no_queue_id_gets_one_made_from_it(name):
    queue = queue_id_for(name)
    assert QUEUE_ID.match(queue)
    assert queue == queue_id_for(name)  # the same every time, in every process
    assert queue_settings(name).queue == queue
    assert queue_settings(name).cluster == name


def test_names_that_differ_only_in_what_a_queue_id_cannot_hold_get_different_queues():
    assert queue_id_for("scheduler_test:q") != queue_id_for("scheduler-test-q")
    assert queue_id_for("a_b") != queue_id_for("a:b")
    assert queue_id_for("scheduler_test:q").startswith("scheduler-test-q-")


def test_a_valid_queue_id_is_kept_as_it_is():
    assert queue_id_for("nightly-reports") == "nightly-reports"


def test_a_cluster_q_cluster_does_not_define_has_the_main_clusters_settings():
    main, nightly = queue_settings(), queue_settings("nightly")
    assert nightly.queue_path.endswith("/queues/nightly")
    assert (nightly.url, nightly.timeout, nightly.max_attempts) == (
        main.url,
        main.timeout,
        main.max_attempts,
    )


# django-q's settings, read where django-q reads them


def test_the_main_cluster_reads_django_qs_conf_as_it_stands(monkeypatch):
    monkeypatch.setattr(Conf, "MAX_ATTEMPTS", 7)
    monkeypatch.setattr(Conf, "TIMEOUT", 42)
    monkeypatch.setattr(Conf, "ACK_FAILURES", True)
    main = queue_settings()
    assert (main.max_attempts, main.timeout, main.ack_failures) == (7, 42, True)
    assert queue_settings("nightly").max_attempts == 7  # not defined: the main one's


def test_an_alt_clusters_own_values_win_over_conf(monkeypatch):
    monkeypatch.setattr(Conf, "MAX_ATTEMPTS", 7)
    monkeypatch.setattr(Conf, "ACK_FAILURES", True)
    second = queue_settings("second")
    assert (second.max_attempts, second.timeout) == (2, 10)  # ALT_CLUSTERS["second"]
    assert second.ack_failures is True  # not set there: django-q's


def job_cluster(**cloud_tasks):
    """Q_CLUSTER changes that add the job cluster "long", its cloud_tasks changed."""
    long = {"timeout": 7200, "cloud_tasks": {"target": "cloud_run_job", "job": "worker"}}
    long["cloud_tasks"].update(cloud_tasks)
    return {"ALT_CLUSTERS": {"second": {"cloud_tasks": {"queue": "second-queue"}}, "long": long}}


def test_a_job_cluster_runs_its_tasks_in_the_job_of_its_project_and_location(configure):
    configure(q_cluster=job_cluster())
    long = queue_settings("long")
    assert long.runs_in_job
    assert long.job == "projects/test-project/locations/europe-west1/jobs/worker"
    assert (long.timeout, long.execution_timeout(long.timeout)) == (7200, 7260)
    assert long.deadline_for(7200) == 60  # the receiver answers once the execution started
    assert not queue_settings().runs_in_job
    assert queue_settings().job is None


def test_a_job_can_be_named_by_its_resource_name(configure):
    other = "projects/other-project/locations/us-central1/jobs/batch"
    configure(q_cluster=job_cluster(job=other))
    assert queue_settings("long").job == other


def test_a_job_clusters_timeout_may_reach_cloud_run_jobs_168_hours(configure):
    change = job_cluster()
    change["ALT_CLUSTERS"]["long"]["timeout"] = 168 * 3600 - 60
    configure(q_cluster=change)
    assert queue_settings("long").execution_timeout(168 * 3600 - 60) == 168 * 3600


def test_a_timeout_beyond_cloud_run_jobs_limit_is_refused(configure):
    change = job_cluster()
    change["ALT_CLUSTERS"]["long"]["timeout"] = 168 * 3600
    configure(q_cluster=change)
    with pytest.raises(ConfigurationError) as raised:
        queue_settings("long")
    assert raised.value.check_id == "django_q_cloudtasks.E020"
    assert "Lower the timeout to 604740 s" in str(raised.value)


def test_a_timeout_too_long_for_the_receiver_points_at_job_clusters(configure):
    configure(q_cluster={"timeout": 7200})
    with pytest.raises(ConfigurationError, match='"target": "cloud_run_job"'):
        queue_settings()


@pytest.mark.parametrize(
    ("cloud_tasks", "words"),
    [
        ({"target": "cloud_run"}, "Cluster 'long' has target 'cloud_run'."),
        ({"job": None}, 'has target "cloud_run_job", but no "job"'),
        ({"job": "Worker_1"}, "'Worker_1' is not a Cloud Run job name"),
        ({"job": "projects/p/locations/l/jobs/Bad"}, "is not a Cloud Run job name"),
        ({"job": "projects/p/jobs/worker"}, "is not a Cloud Run job name"),
        ({"job": 7}, "7 is not a Cloud Run job name"),
        ({"target": "http"}, "sets 'job', which only clusters with target 'cloud_run_job' have"),
    ],
)
def test_a_wrong_job_setting_raises_a_clear_error(configure, cloud_tasks, words):
    configure(q_cluster=job_cluster(**cloud_tasks))
    with pytest.raises(ConfigurationError) as raised:
        queue_settings("long")
    assert raised.value.check_id == "django_q_cloudtasks.E019"
    assert words in str(raised.value)


def test_alt_clusters_inherit_the_main_clusters_job(configure):
    configure(target="cloud_run_job", job="worker", q_cluster={"timeout": 7200})
    assert queue_settings("second").job == queue_settings().job
    http = {"timeout": 10, "cloud_tasks": {"target": "http"}}
    configure(q_cluster={"ALT_CLUSTERS": {"second": http}})
    assert not queue_settings("second").runs_in_job  # the inherited job is not its own


@pytest.mark.parametrize("marker", ["K_SERVICE", "CLOUD_RUN_JOB", "GAE_SERVICE"])
def test_each_of_google_clouds_runtimes_is_recognised(monkeypatch, marker):
    for name in environment.GOOGLE_CLOUD_MARKERS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(marker, "mysite")
    assert environment.on_google_cloud()


# App Engine targets


def app_engine_cluster(timeout=300, **cloud_tasks):
    """Q_CLUSTER changes that add the App Engine cluster "worker", its cloud_tasks changed."""
    worker = {"timeout": timeout, "cloud_tasks": {"target": "app_engine", **cloud_tasks}}
    return {
        "ALT_CLUSTERS": {"second": {"cloud_tasks": {"queue": "second-queue"}}, "worker": worker}
    }


def test_an_app_engine_cluster_routes_to_its_service_at_the_receivers_path(configure):
    configure(q_cluster=app_engine_cluster(service="worker", version="v2", scaling="basic"))
    worker = queue_settings("worker")
    assert worker.app_engine == AppEngineRouting("worker", "v2", "basic")
    assert (worker.receiver_uri, worker.schedule_url) == ("/_tasks/", "/_tasks/schedule/")
    assert worker.deadline_for(3600) == 3615
    assert queue_settings().app_engine is None


def test_an_app_engine_cluster_needs_no_url_and_routes_to_the_service_that_enqueues(
    configure, app_engine_instance
):
    app_engine_instance("frontend")
    configure(url=None, q_cluster=app_engine_cluster())
    worker = queue_settings("worker")
    assert (worker.url, worker.receiver_uri) == ("", "/_tasks/")
    assert worker.app_engine == AppEngineRouting("frontend", None, "automatic")


@pytest.mark.parametrize(
    ("scaling", "longest"),
    [("automatic", 600), ("flexible", 3600), ("basic", 86400), ("manual", 86400)],
)
def test_an_app_engine_timeout_may_reach_what_its_scaling_lets_a_request_last(
    configure, scaling, longest
):
    configure(q_cluster=app_engine_cluster(timeout=longest, scaling=scaling))
    assert queue_settings("worker").deadline_for(longest) == longest + 15
    configure(q_cluster=app_engine_cluster(timeout=longest + 1, scaling=scaling))
    with pytest.raises(ConfigurationError) as raised:
        queue_settings("worker")
    assert raised.value.check_id == "django_q_cloudtasks.E022"
    assert f"Lower the timeout to {longest} s or less" in str(raised.value)


def test_two_hours_are_refused_for_automatic_scaling_and_say_why(configure):
    configure(q_cluster=app_engine_cluster(timeout=7200))
    with pytest.raises(ConfigurationError) as raised:
        queue_settings("worker")
    assert raised.value.message == (
        "Cluster 'worker' has timeout 7200 s, but App Engine lets a request of a service "
        "with automatic scaling last 10 minutes."
    )
    assert '"scaling": "basic"' in raised.value.hint


def test_on_app_engines_flexible_environment_its_own_services_scaling_is_detected(
    configure, app_engine_instance
):
    app_engine_instance("worker", standard=False)
    configure(q_cluster=app_engine_cluster(timeout=3000))
    assert queue_settings("worker").app_engine == AppEngineRouting("worker", None, "flexible")
    configure(q_cluster=app_engine_cluster(timeout=600, service="other"))
    assert queue_settings("worker").app_engine == AppEngineRouting("other", None, "automatic")
    configure(q_cluster=app_engine_cluster(timeout=3000, service="other"))
    with pytest.raises(ConfigurationError, match="automatic scaling last 10 minutes"):
        queue_settings("worker")


def test_a_service_left_none_is_the_service_that_enqueues(configure, app_engine_instance):
    app_engine_instance("frontend")
    configure(q_cluster=app_engine_cluster(service=None, version=None))
    assert queue_settings("worker").app_engine == AppEngineRouting("frontend", None, "automatic")


@pytest.mark.parametrize(
    ("cloud_tasks", "words"),
    [
        ({"scaling": "elastic"}, "Cluster 'worker' has scaling 'elastic'."),
        ({"service": "Worker_1"}, "'Worker_1' is not an App Engine service id"),
        ({"version": 3}, "3 is not an App Engine version id"),
    ],
)
def test_a_wrong_app_engine_setting_raises_a_clear_error(configure, cloud_tasks, words):
    configure(q_cluster=app_engine_cluster(**cloud_tasks))
    with pytest.raises(ConfigurationError) as raised:
        queue_settings("worker")
    assert raised.value.check_id == "django_q_cloudtasks.E019"
    assert words in str(raised.value)


def test_app_engine_keys_on_a_cluster_of_another_target_are_refused(configure):
    configure(q_cluster={"ALT_CLUSTERS": {"second": {"cloud_tasks": {"scaling": "basic"}}}})
    with pytest.raises(
        ConfigurationError, match="sets 'scaling', which only clusters with target 'app_engine'"
    ):
        queue_settings("second")


def test_an_app_engine_dispatch_deadline_may_reach_24_hours_and_15_seconds(configure):
    configure(q_cluster=app_engine_cluster(scaling="basic", dispatch_deadline=86415))
    assert queue_settings("worker").deadline_for(60) == 86415
    configure(q_cluster=app_engine_cluster(scaling="basic", dispatch_deadline=86416))
    with pytest.raises(ConfigurationError, match="from 15 to 86415"):
        queue_settings("worker")


def test_an_app_engine_timeout_past_its_dispatch_deadline_blames_the_deadline(configure):
    configure(q_cluster=app_engine_cluster(timeout=3600, scaling="basic", dispatch_deadline=600))
    with pytest.raises(ConfigurationError) as raised:
        queue_settings("worker")
    assert raised.value.check_id == "django_q_cloudtasks.E007"
    assert "waits at most 600 s (dispatch_deadline)" in raised.value.message


def test_an_app_engine_cluster_of_its_own_service_does_not_inherit_the_mains_scaling(configure):
    configure(
        target="app_engine",
        service="worker",
        scaling="basic",
        q_cluster={"timeout": 600, "ALT_CLUSTERS": {"quick": {"cloud_tasks": {"service": "web"}}}},
    )
    assert queue_settings().app_engine == AppEngineRouting("worker", None, "basic")
    assert queue_settings("quick").app_engine == AppEngineRouting("web", None, "automatic")


def test_without_a_url_an_app_engine_cluster_has_no_tick(configure):
    configure(url=None, q_cluster=app_engine_cluster())
    with pytest.raises(ConfigurationError, match="has no url, so the tick has none") as raised:
        _ = queue_settings("worker").tick_url
    assert raised.value.check_id == "django_q_cloudtasks.E005"


def test_without_a_url_an_app_engine_cluster_needs_the_receiver_mounted(configure, settings):
    # Through the settings fixture, as configure changes them: an override_settings
    # decorator around it would leave the URLconf changed for the tests after this one.
    settings.ROOT_URLCONF = "tests.project.urls_without_receiver"
    configure(url=None, q_cluster=app_engine_cluster())
    with pytest.raises(ConfigurationError, match="the receiver's path is not known") as raised:
        queue_settings("worker")
    assert raised.value.check_id == "django_q_cloudtasks.E005"


def test_app_engine_deliveries_are_trusted_only_on_app_engine(
    configure, app_engine_instance, monkeypatch
):
    configure(q_cluster=app_engine_cluster())
    assert not receiver_settings().on_app_engine
    app_engine_instance("worker")
    assert receiver_settings().on_app_engine
    monkeypatch.setenv("K_SERVICE", "mysite")  # Cloud Run's, beside App Engine's: not App Engine
    receiver_settings.cache_clear()
    assert not receiver_settings().on_app_engine


def test_environment_says_where_it_runs(monkeypatch):
    for name in (*environment.GOOGLE_CLOUD_MARKERS, *environment.APP_ENGINE_MARKERS, "GAE_ENV"):
        monkeypatch.delenv(name, raising=False)
    assert (environment.on_app_engine(), environment.app_engine_environment()) == (False, None)
    for name in environment.APP_ENGINE_MARKERS:
        monkeypatch.setenv(name, "x")
    assert environment.app_engine_environment() == "flexible"
    monkeypatch.setenv("GAE_ENV", "standard")
    assert environment.app_engine_environment() == "standard"
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.setenv("GAE_APPLICATION", "e~shop-123")
    assert environment.detect_project() == "shop-123"
