"""The pages name what exists, and the reference pages name all there is: every test file a
page cites as evidence is there, every system check the package defines is in the checks
reference, and every public name is in the Python API page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import django_q_cloudtasks

ROOT = Path(__file__).resolve().parents[2]
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
# A file of the repository named in backticks, "tests/receiver/test_auth.py::a_test" too.
SOURCE_FILE = re.compile(r"`((?:tests|django_q_cloudtasks|benchmarks|example)/[\w/.-]+\.py)\b")
CHECK_ID = re.compile(r"django_q_cloudtasks\.[EW]\d{3}")


def cited_files() -> list[tuple[str, str]]:
    return [
        (page.relative_to(ROOT).as_posix(), path)
        for page in PAGES
        for path in sorted(set(SOURCE_FILE.findall(page.read_text())))
    ]


def test_the_pages_cite_files():
    assert len(cited_files()) > 20  # the guarantees name their tests


@pytest.mark.parametrize(("page", "path"), cited_files())
def test_each_file_a_page_cites_exists(page, path):
    assert (ROOT / path).is_file(), f"{page} names {path}, which is not in the repository"


def test_every_system_check_is_in_the_checks_reference():
    package = Path(django_q_cloudtasks.__file__).parent
    defined = {i for f in package.rglob("*.py") for i in CHECK_ID.findall(f.read_text())}
    documented = set(CHECK_ID.findall((ROOT / "docs/reference/checks.md").read_text()))
    assert len(defined) > 20
    assert defined - documented == set(), "system checks the reference does not describe"
    assert documented - defined == set(), "checks the reference describes that do not exist"


def test_every_public_name_is_in_the_python_api_page():
    page = (ROOT / "docs/reference/api.md").read_text()
    shown = set(re.findall(r"^::: django_q_cloudtasks\.([\w.]+)$", page, re.MULTILINE))
    for name in django_q_cloudtasks.__all__:
        module = django_q_cloudtasks._PUBLIC[name]
        assert {f"{module}.{name}", module} & shown, f"{name} is not on the Python API page"
