"""What the README tells users to import, from the package itself."""

import tomllib
from pathlib import Path

import pytest

import django_q_cloudtasks
from django_q_cloudtasks import exceptions
from django_q_cloudtasks.cancellation import Cancellation, cancel
from django_q_cloudtasks.receiver.execution import cancelled


def test_every_public_name_comes_from_the_package_itself():
    assert sorted(django_q_cloudtasks.__all__) == sorted(django_q_cloudtasks._PUBLIC)
    for name in django_q_cloudtasks.__all__:
        assert getattr(django_q_cloudtasks, name) is not None
    assert (django_q_cloudtasks.cancel, django_q_cloudtasks.cancelled) == (cancel, cancelled)
    assert django_q_cloudtasks.Cancellation is Cancellation
    assert django_q_cloudtasks.TaskCancelled is exceptions.TaskCancelled


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'cancel_everything'"):
        django_q_cloudtasks.cancel_everything  # noqa: B018


def test_the_version_is_pyproject_tomls_as_the_installed_package_carries_it():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert django_q_cloudtasks.__version__ == pyproject["project"]["version"]
