"""The public repository's workflow (.github/workflows/ci.yml) runs what .ci/run runs: the
test command of README.md and the quick benchmarks, and publishes only what they passed.
It runs only on GitHub, so these checks stand in for a run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


@pytest.fixture(scope="module")
def jobs() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]


def sessions(command: str) -> list[str]:
    """The sessions ``nox -s A B`` runs; ``nox -s A -- ARGS`` is one, "A -- ARGS"."""
    words = shlex.split(command)
    words = words[words.index("-s") + 1 :]
    return [" ".join(words)] if "--" in words else words


def workflow_sessions(jobs: dict[str, Any]) -> set[str]:
    """Every nox session a job of the workflow runs, its matrix unrolled."""
    found: set[str] = set()
    for job in jobs.values():
        matrix = job.get("strategy", {}).get("matrix", {})
        for step in job.get("steps", []):
            run = step.get("run", "")
            if not run.startswith("nox -s "):
                continue
            if "${{ matrix.session }}" in run:
                found.update(matrix["session"])
            else:
                found.update(sessions(run))
    return found


def test_it_runs_the_test_command_of_the_readme_and_the_quick_benchmarks(jobs):
    readme = re.search(r"^nox -s [a-z ]+$", (ROOT / "README.md").read_text(), re.MULTILINE)
    assert readme, "README.md names no test command"
    ci_run = (ROOT / ".ci" / "run").read_text()
    assert f"nox --list --json -s {' '.join(sessions(readme[0]))} " in ci_run
    assert "run_session bench -- --quick" in ci_run
    assert workflow_sessions(jobs) == {*sessions(readme[0]), "bench -- --quick"}


def test_the_jobs_that_need_them_have_postgresql_redis_and_a_browser(jobs):
    for name, job in jobs.items():
        if workflow_sessions({name: job}) & {"tests", "slow", "docs", "bench -- --quick"}:
            assert {"postgres", "redis"} <= set(job.get("services", {})), name
            assert job["env"]["DJQ_REQUIRE_BROWSER"] == job["env"]["DJQ_REQUIRE_REDIS"] == "1"


def test_it_publishes_only_after_every_other_job_passed_and_the_tag_names_the_version(jobs):
    publish = jobs["publish"]
    assert set(publish["needs"]) == set(jobs) - {"publish", "pages"}
    assert publish["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert publish["permissions"] == {"id-token": "write"}  # trusted publishing, no token
    steps = [step.get("uses", "") or step.get("run", "") for step in publish["steps"]]
    check = next(i for i, step in enumerate(steps) if "${GITHUB_REF_NAME#v}" in step)
    assert check < steps.index("pypa/gh-action-pypi-publish@release/v1")


def test_a_tag_is_built_only_with_its_release_dated_in_the_changelog(jobs):
    (check,) = [step for step in jobs["build"]["steps"] if "CHANGELOG.md" in step.get("run", "")]
    assert check["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert 'grep -qF "## [${GITHUB_REF_NAME#v}] - " CHANGELOG.md' in check["run"]


def test_the_site_published_from_main_is_the_one_nox_s_docs_built_and_checked(jobs):
    assert jobs["pages"]["if"] == "github.ref == 'refs/heads/main'"
    assert jobs["pages"]["needs"] == ["tests"]
    assert jobs["pages"]["permissions"] == {"pages": "write", "id-token": "write"}
    (upload,) = [s for s in jobs["tests"]["steps"] if "upload-pages-artifact" in s.get("uses", "")]
    assert upload["if"] == "matrix.session == 'docs' && github.ref == 'refs/heads/main'"
    assert upload["with"]["path"] == "site/"
