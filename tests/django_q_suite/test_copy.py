"""The test modules here are django-q2's own, as its release ships them: unchanged."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import django_q
import pytest

from tests.django_q_suite.conftest import DJANGO_Q2_VERSION

HERE = Path(__file__).parent
COPIES = sorted(path.name for path in HERE.glob("test_*.py") if path.name != Path(__file__).name)


def test_the_suite_has_every_test_module_django_q2_ships():
    shipped = sorted(path.name for path in Path(django_q.__file__).parent.glob("tests/test_*.py"))
    if importlib.metadata.version("django-q2") != DJANGO_Q2_VERSION:
        pytest.skip(f"django-q2 {DJANGO_Q2_VERSION}'s suite; another version is installed")
    assert shipped == COPIES


@pytest.mark.parametrize("name", COPIES)
def test_each_module_is_django_q2s_byte_for_byte(name):
    if importlib.metadata.version("django-q2") != DJANGO_Q2_VERSION:
        pytest.skip(f"django-q2 {DJANGO_Q2_VERSION}'s suite; another version is installed")
    shipped = Path(django_q.__file__).parent / "tests" / name
    assert (HERE / name).read_bytes() == shipped.read_bytes()
