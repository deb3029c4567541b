"""System checks report each misconfiguration at start-up, with its id."""

import pytest
from django.core.checks import run_checks
from django.test import override_settings


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
