"""System checks report each misconfiguration at start-up, with its id."""

import importlib.metadata
import importlib.util

import pytest
from django.core.checks import run_checks
from django.test import override_settings

SHARED_CACHE = {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "cache"}
LOCAL_CACHE = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}


@pytest.fixture(autouse=True)
def shared_cache(settings):
    """A production-like setup: one cache every receiver shares."""
    settings.CACHES = {"default": SHARED_CACHE}


def check_ids() -> list[str]:
    return [message.id for message in run_checks() if message.id.startswith("django_q_cloudtasks")]


def test_a_correct_setup_passes():
    assert check_ids() == []


def test_a_wrong_setting_is_reported_as_an_error(configure):
    configure(serivce_account_email="x@y.z")
    (message,) = [m for m in run_checks() if m.id == "django_q_cloudtasks.E002"]
    assert "Did you mean 'service_account_email'?" in message.hint


def test_every_cluster_is_checked(configure):
    configure(q_cluster={"ALT_CLUSTERS": {"second": {"cloud_tasks": {"queue": "no spaces"}}}})
    assert check_ids() == ["django_q_cloudtasks.E004"]


def test_a_missing_cloud_tasks_section(settings):
    settings.Q_CLUSTER = {"name": "tests", "broker_class": "django_q_cloudtasks.CloudTasksBroker"}
    assert check_ids() == ["django_q_cloudtasks.E001"]


@override_settings(ROOT_URLCONF="tests.project.urls_without_receiver")
def test_an_unmounted_receiver_is_an_error():
    assert check_ids() == ["django_q_cloudtasks.E012"]


def test_a_url_whose_path_is_not_the_receiver_is_a_warning(configure):
    configure(url="https://tasks.example.com/elsewhere/")
    assert check_ids() == ["django_q_cloudtasks.W003"]


def test_another_broker_is_a_warning(configure):
    configure(q_cluster={"broker_class": "django_q.brokers.orm.ORM"})
    assert check_ids() == ["django_q_cloudtasks.W001"]


@pytest.mark.parametrize(("debug", "expected"), [(False, ["django_q_cloudtasks.W002"]), (True, [])])
def test_verification_off_in_production_is_a_warning(configure, settings, debug, expected):
    settings.DEBUG = debug
    configure(verify_token=False)
    assert check_ids() == expected


@pytest.mark.parametrize(
    ("allowed_hosts", "debug", "expected"),
    [
        (["tasks.example.com"], False, []),
        ([".example.com"], False, []),
        (["app.example.com"], False, ["django_q_cloudtasks.E015"]),
        ([], True, ["django_q_cloudtasks.E015"]),
    ],
)
def test_a_receiver_host_outside_allowed_hosts_is_an_error(
    settings, allowed_hosts, debug, expected
):
    settings.ALLOWED_HOSTS, settings.DEBUG = allowed_hosts, debug
    assert check_ids() == expected


def test_localhost_needs_no_allowed_hosts_while_debugging(settings, configure):
    settings.ALLOWED_HOSTS, settings.DEBUG = [], True
    configure(url="http://localhost:8000/_tasks/", emulator_host="127.0.0.1:8123")
    assert check_ids() == []


def test_an_https_redirect_without_the_proxy_header_is_a_warning(settings):
    settings.SECURE_SSL_REDIRECT = True
    assert check_ids() == ["django_q_cloudtasks.W005"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert check_ids() == []


@pytest.mark.parametrize(
    ("backend", "debug", "expected"),
    [
        ("django.core.cache.backends.locmem.LocMemCache", False, ["django_q_cloudtasks.W004"]),
        ("django.core.cache.backends.locmem.LocMemCache", True, []),
        (
            "django.core.cache.backends.filebased.FileBasedCache",
            False,
            ["django_q_cloudtasks.W004"],
        ),
        ("django.core.cache.backends.dummy.DummyCache", True, ["django_q_cloudtasks.W004"]),
        ("django.core.cache.backends.redis.RedisCache", False, []),
    ],
)
def test_a_cache_receivers_cannot_share_is_a_warning(settings, backend, debug, expected):
    settings.CACHES = {"default": {"BACKEND": backend, "LOCATION": "/tmp/djq-cache"}}
    settings.DEBUG = debug
    assert check_ids() == expected


def test_with_the_emulator_a_cache_in_one_process_is_a_warning_even_while_debugging(
    settings, configure
):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.DEBUG = True
    configure(emulator_host="127.0.0.1:8123", url="http://127.0.0.1:8000/_tasks/")
    (message,) = [m for m in run_checks() if m.id == "django_q_cloudtasks.W004"]
    assert "createcachetable" in (message.hint or "")


def test_cached_results_in_a_local_cache_are_an_error(settings, configure):
    settings.CACHES = {"default": LOCAL_CACHE}
    configure(q_cluster={"cached": 60})
    (message,) = [m for m in run_checks() if m.id == "django_q_cloudtasks.E017"]
    assert "results would be lost" in message.msg


def test_the_cache_django_q_names_must_exist(configure):
    configure(q_cluster={"cache": "tasks"})
    assert check_ids() == ["django_q_cloudtasks.E016"]
    (message,) = [m for m in run_checks() if m.id == "django_q_cloudtasks.E016"]
    assert "'tasks'" in message.msg


@pytest.mark.parametrize(("debug", "expected"), [(False, ["django_q_cloudtasks.W006"]), (True, [])])
def test_sync_mode_outside_debugging_is_a_warning(configure, settings, debug, expected):
    settings.DEBUG = debug
    configure(q_cluster={"sync": True})
    assert check_ids() == expected


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (100_000, ["django_q_cloudtasks.E018"]),  # below the 1 MiB a task's body can be
        (2_621_440, []),  # Django's default
        (None, []),
    ],
)
def test_an_upload_limit_below_the_largest_task_is_an_error(settings, limit, expected):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = limit
    assert check_ids() == expected


def test_an_upload_limit_above_every_clusters_max_package_bytes_is_enough(settings, configure):
    configure(max_package_bytes=50_000)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 60_000
    assert check_ids() == []


def test_a_cluster_without_a_timeout_is_a_warning(configure):
    alt = {"second": {"timeout": None, "cloud_tasks": {"queue": "second-queue"}}}
    configure(q_cluster={"ALT_CLUSTERS": alt})
    (message,) = [m for m in run_checks() if m.id.startswith("django_q_cloudtasks")]
    assert message.id == "django_q_cloudtasks.W007"
    assert "Cluster 'second' has no timeout: Cloud Tasks waits 600 s" in message.msg
    assert "second time" in message.msg


def test_a_job_cluster_without_a_timeout_is_a_warning_about_the_jobs_own(configure):
    long = {"timeout": None, "cloud_tasks": {"target": "cloud_run_job", "job": "worker"}}
    configure(q_cluster={"ALT_CLUSTERS": {"long": long}})
    (message,) = [m for m in run_checks() if m.id.startswith("django_q_cloudtasks")]
    assert message.id == "django_q_cloudtasks.W007"
    assert "the Cloud Run job's own task timeout (10 minutes" in message.msg
    assert "at most 604740 s" in message.hint


def test_a_job_cluster_without_the_cloud_run_client_is_an_error(configure, monkeypatch):
    long = {"timeout": 60, "cloud_tasks": {"target": "cloud_run_job", "job": "worker"}}
    configure(q_cluster={"ALT_CLUSTERS": {"long": long}})
    assert check_ids() == []  # google-cloud-run is installed here
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "google.cloud.run_v2" else real_find_spec(name, *args),
    )
    (message,) = [m for m in run_checks() if m.id.startswith("django_q_cloudtasks")]
    assert message.id == "django_q_cloudtasks.E021"
    assert "Cluster(s) 'long' run their tasks in a Cloud Run job" in message.msg
    assert message.hint == "pip install 'django-q-cloudtasks[jobs]'"


@pytest.mark.parametrize(
    ("scaling", "expected"),
    [("basic", []), ("manual", []), ("automatic", ["django_q_cloudtasks.E022"])],
)
def test_a_two_hour_app_engine_task_needs_basic_or_manual_scaling(configure, scaling, expected):
    worker = {"timeout": 7200, "cloud_tasks": {"target": "app_engine", "scaling": scaling}}
    configure(q_cluster={"ALT_CLUSTERS": {"worker": worker}})
    assert check_ids() == expected


def app_engine_worker(configure, timeout=300, **cloud_tasks):
    worker = {"timeout": timeout, "cloud_tasks": {"target": "app_engine", **cloud_tasks}}
    configure(q_cluster={"ALT_CLUSTERS": {"worker": worker}})


@pytest.mark.parametrize(
    ("exempt", "expected"),
    [
        ([], ["django_q_cloudtasks.E023"]),
        ([r"^_tasks/"], []),
        ([r"^admin/"], ["django_q_cloudtasks.E023"]),
    ],
)
def test_an_https_redirect_of_app_engine_tasks_is_an_error(configure, settings, exempt, expected):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_REDIRECT_EXEMPT = exempt
    assert check_ids() == []  # HTTP tasks come over https
    app_engine_worker(configure)
    assert check_ids() == expected
    if expected:
        (message,) = [m for m in run_checks() if m.id == "django_q_cloudtasks.E023"]
        assert "does not exempt /_tasks/" in message.msg
        assert message.hint == 'Add r"^_tasks/" to SECURE_REDIRECT_EXEMPT.'


@pytest.mark.parametrize(
    ("version", "expected"),
    [("21.2.0", ["django_q_cloudtasks.E024"]), ("22.0.0", []), ("23.0.0", [])],
)
def test_app_engine_tasks_with_a_gunicorn_that_keeps_underscored_headers_are_an_error(
    configure, monkeypatch, version, expected
):
    real_version = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata,
        "version",
        lambda name: version if name == "gunicorn" else real_version(name),
    )
    assert check_ids() == []  # no App Engine cluster: the headers are never trusted
    app_engine_worker(configure)
    assert check_ids() == expected


def test_app_engine_clusters_alone_without_an_email_for_the_tick_are_a_warning(configure):
    configure(
        service_account_email=None,
        target="app_engine",
        q_cluster={"ALT_CLUSTERS": {}},
    )
    (message,) = [m for m in run_checks() if m.id.startswith("django_q_cloudtasks")]
    assert message.id == "django_q_cloudtasks.W009"
    assert "schedules would not run" in message.msg


def test_an_app_engine_cluster_without_a_timeout_is_told_its_scalings_longest(configure):
    app_engine_worker(configure, timeout=None, scaling="basic")
    (message,) = [m for m in run_checks() if m.id.startswith("django_q_cloudtasks")]
    assert message.id == "django_q_cloudtasks.W007"
    assert "at most 86400 s" in message.hint
    app_engine_worker(configure, timeout=None)
    (message,) = [m for m in run_checks() if m.id.startswith("django_q_cloudtasks")]
    assert "at most 600 s" in message.hint


@pytest.mark.parametrize(
    ("host", "debug", "expected"),
    [
        ("10.0.0.7:8123", False, ["django_q_cloudtasks.W008"]),
        ("emulator:8123", False, ["django_q_cloudtasks.W008"]),
        ("10.0.0.7:8123", True, []),  # development, on another host
        ("127.0.0.1:8123", False, []),
        ("localhost:8123", False, []),
        ("[::1]:8123", False, []),
    ],
)
def test_emulator_mode_off_this_machine_in_production_is_a_warning(
    configure, settings, monkeypatch, host, debug, expected
):
    monkeypatch.setenv("CLOUD_TASKS_EMULATOR_HOST", host)
    settings.DEBUG = debug
    configure()
    assert check_ids() == expected
