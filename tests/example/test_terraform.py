"""``example/terraform/``: every file parses (python-hcl2), and the set-up it describes is
the one the gcloud steps of docs/how-to/example.md make ("The example on Cloud Run") and the one the
example's settings want: its queues as ``cloudtasks_setup`` would make them, its worker
job as the job cluster runs it."""

from __future__ import annotations

import re
import runpy
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest
from django.test import override_settings

from django_q_cloudtasks.conf import queue_settings
from django_q_cloudtasks.gcp.provisioning import desired_fields

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "example" / "terraform"
SECTION = ("## The example on Cloud Run", "### With Terraform")
# What the README's variables stand for in Terraform.
MEMBERS = {
    "serviceAccount:$RUNTIME_SA": "runtime",
    "serviceAccount:$TASKS_SA": "tasks_invoker",
}
# Only for building the image, which the Terraform takes as a variable.
BUILD_APIS = {"cloudbuild.googleapis.com", "artifactregistry.googleapis.com"}


def unquoted(value: Any) -> Any:
    """python-hcl2's values without the quotes it keeps around strings, nor its markers."""
    if isinstance(value, dict):
        return {unquoted(k): unquoted(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [unquoted(item) for item in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@pytest.fixture(scope="module")
def terraform() -> dict[str, list[Any]]:
    """Every file's blocks, by kind: {"resource": [...], "variable": [...], ...}."""
    merged: dict[str, list[Any]] = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as file:
            for kind, blocks in unquoted(hcl2.load(file)).items():
                merged.setdefault(kind, []).extend(blocks)
    return merged


def resources(terraform: dict[str, list[Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {
        name: body
        for block in terraform.get("resource", [])
        for resource_kind, named in block.items()
        if resource_kind == kind
        for name, body in named.items()
    }


def local(terraform: dict[str, list[Any]], name: str) -> Any:
    (value,) = [block[name] for block in terraform["locals"] if name in block]
    return value


@pytest.fixture(scope="module")
def gcloud() -> list[list[str]]:
    """The gcloud commands of the example's guide on Cloud Run, each as its words."""
    text = (ROOT / "docs" / "how-to" / "example.md").read_text()
    section = text[text.index(SECTION[0]) : text.index(SECTION[1])]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.rsplit("|", 1)[-1])  # the command a pipe feeds
            if words[:1] == ["gcloud"] and words[1:3] != ["config", "set"]:
                commands.append(words)
    return commands


def flags(words: list[str]) -> dict[str, str]:
    return dict(word[2:].split("=", 1) for word in words if word.startswith("--") and "=" in word)


def commands(gcloud: list[list[str]], *prefix: str) -> Iterator[list[str]]:
    return (words for words in gcloud if words[1 : 1 + len(prefix)] == list(prefix))


@pytest.fixture(scope="module")
def example_q_cluster() -> dict[str, Any]:
    """The example's Q_CLUSTER, as its settings make it on Cloud Run, where it detects the
    project, region and URL (given here)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("K_SERVICE", "demo")  # as on Cloud Run: no emulator
        settings = runpy.run_path(str(ROOT / "example" / "demo" / "settings.py"))
    q_cluster = settings["Q_CLUSTER"]
    q_cluster["cloud_tasks"].update(
        project="my-project",
        location="europe-west1",
        url="https://demo-123.europe-west1.run.app/_tasks/",
        service_account_email="tasks-invoker@my-project.iam.gserviceaccount.com",
    )
    return q_cluster  # type: ignore[no-any-return]


def test_every_file_parses(terraform):
    assert {"resource", "variable", "output", "terraform", "locals"} <= set(terraform)
    assert {name for block in terraform["variable"] for name in block} >= {
        "project",
        "region",
        "image",
    }


def test_the_apis_are_those_the_readme_enables(terraform, gcloud):
    (enable,) = commands(gcloud, "services", "enable")
    assert (
        set(local(terraform, "apis"))
        == {w for w in enable[3:] if not w.startswith("--")} - BUILD_APIS
    )


SECONDS = {"min_backoff", "max_backoff", "max_retry_duration"}


def queue_fields(queue: dict[str, Any]) -> dict[str, float]:
    """A Terraform queue's managed fields, as provisioning.desired_fields names them."""
    fields = {}
    for section in ("rate_limits", "retry_config"):
        for name, value in queue[section][0].items():
            fields[f"{section}.{name}"] = (
                float(value.removesuffix("s")) if name in SECONDS else float(value)
            )
    return fields


def test_the_queues_are_as_cloudtasks_setup_makes_them_from_the_settings(
    terraform, example_q_cluster
):
    queues = {q["name"]: q for q in resources(terraform, "google_cloud_tasks_queue").values()}
    with override_settings(Q_CLUSTER=example_q_cluster):
        clusters = [example_q_cluster["name"], *example_q_cluster["ALT_CLUSTERS"]]
        wanted = {queue_settings(c).queue: desired_fields(queue_settings(c)) for c in clusters}
    assert set(queues) == set(wanted) == {"demo", "long"}
    for name, fields in wanted.items():
        assert queue_fields(queues[name]) == pytest.approx(fields), name


def test_the_readme_creates_the_same_queues(terraform, gcloud):
    queues = {q["name"]: q for q in resources(terraform, "google_cloud_tasks_queue").values()}
    defaults = {"max-attempts": "100", "min-backoff": "0.1s", "max-backoff": "3600s"}
    for words in commands(gcloud, "tasks", "queues", "create"):
        given = {**defaults, **flags(words)}
        retry = queues[words[4]]["retry_config"][0]
        assert (int(given["max-attempts"]), given["min-backoff"], given["max-backoff"]) == (
            retry["max_attempts"],
            retry["min_backoff"].replace("0.100s", "0.1s"),
            retry["max_backoff"],
        )
        assert queues[words[4]]["rate_limits"][0] == {
            "max_dispatches_per_second": 500,  # Cloud Tasks' defaults, as the README leaves them
            "max_concurrent_dispatches": 1000,
        }


def test_the_worker_job_runs_cloudtasks_execute_as_the_readme_creates_it(
    terraform, gcloud, example_q_cluster
):
    (job,) = resources(terraform, "google_cloud_run_v2_job").values()
    (create,) = commands(gcloud, "run", "jobs", "create")
    task = job["template"][0]["template"][0]
    (container,) = task["containers"]
    given = flags(create)
    assert (create[4], job["name"]) == ("demo-worker", "${var.job}")
    assert [given["command"], *given["args"].split(",")] == [
        *container["command"],
        *container["args"],
    ]
    assert (given["task-timeout"], int(given["max-retries"])) == (
        task["timeout"],
        task["max_retries"],
    )
    assert task["service_account"] == "${google_service_account.runtime.email}"
    # Long enough for the cluster "long"'s tasks, should an execution keep the job's own.
    with override_settings(Q_CLUSTER=example_q_cluster):
        long = queue_settings("long")
        assert long.job == "projects/my-project/locations/europe-west1/jobs/demo-worker"
        assert int(task["timeout"].removesuffix("s")) >= long.execution_timeout(long.timeout)


def test_the_service_is_deployed_as_the_readme_deploys_it(terraform, gcloud):
    (service,) = resources(terraform, "google_cloud_run_v2_service").values()
    (deploy,) = commands(gcloud, "run", "deploy")
    template = service["template"][0]
    given = flags(deploy)
    assert (given["timeout"], int(given["concurrency"])) == (
        template["timeout"].removesuffix("s"),
        template["max_instance_request_concurrency"],
    )
    assert "--allow-unauthenticated" in deploy
    public = resources(terraform, "google_cloud_run_v2_service_iam_member")["the_page_is_public"]
    assert (public["role"], public["member"]) == ("roles/run.invoker", "allUsers")


def environment(words: list[str]) -> set[str]:
    given = flags(words)
    pairs = given.get("set-env-vars", "").split(",") + given.get("set-secrets", "").split(",")
    return {pair.split("=", 1)[0] for pair in pairs if pair}


def test_the_service_and_the_job_get_the_environment_the_readme_gives_them(terraform, gcloud):
    plain = set(local(terraform, "env"))
    secret = {"DJANGO_SECRET_KEY", "DATABASE_PASSWORD"}  # and the admin's, when asked for
    (deploy,) = commands(gcloud, "run", "deploy")
    (create,) = commands(gcloud, "run", "jobs", "create")
    assert environment(deploy) == plain | secret
    assert environment(create) == plain | secret | {"RECEIVER_URL"}
    settings_reads = set(
        re.findall(
            r'os\.environ(?:\.get)?\(\s*"([A-Z_]+)"',
            (ROOT / "example" / "demo" / "settings.py").read_text(),
        )
    )
    assert plain | secret | {"RECEIVER_URL"} <= settings_reads


def granted(gcloud: list[list[str]]) -> set[tuple[str, str, str]]:
    """(where, member, role) of each role the README grants."""
    found = set()
    for words in gcloud:
        if "add-iam-policy-binding" not in words:
            continue
        given = flags(words)
        where = {
            "projects": "project",
            "iam": "service account",
            "run": words[2],
            "secrets": "secret",
        }[words[1]]
        found.add((where, MEMBERS[given["member"]], given["role"]))
    return found


def test_the_roles_are_those_the_readme_grants(terraform, gcloud):
    project = {("project", "runtime", role) for role in local(terraform, "runtime_roles")}
    accounts = {
        ("service account", "runtime", body["role"])
        for body in resources(terraform, "google_service_account_iam_member").values()
    }
    secrets = {
        ("secret", "runtime", body["role"])
        for body in resources(terraform, "google_secret_manager_secret_iam_member").values()
    }
    job = {
        ("jobs", "runtime", body["role"])
        for body in resources(terraform, "google_cloud_run_v2_job_iam_member").values()
    }
    service = {
        ("services", "tasks_invoker", body["role"])
        for name, body in resources(terraform, "google_cloud_run_v2_service_iam_member").items()
        if name == "tasks_invoker_calls_the_service"
    }
    assert granted(gcloud) == project | accounts | secrets | job | service


def test_the_tick_is_called_as_the_readme_schedules_it(terraform, gcloud):
    (tick,) = resources(terraform, "google_cloud_scheduler_job").values()
    (create,) = commands(gcloud, "scheduler", "jobs", "create", "http")
    given = flags(create)
    target = tick["http_target"][0]
    assert (given["schedule"], given["time-zone"], given["attempt-deadline"]) == (
        tick["schedule"],
        tick["time_zone"],
        tick["attempt_deadline"],
    )
    assert given["uri"] == "$SERVICE_URL/_tasks/tick/"
    assert target["uri"] == "${google_cloud_run_v2_service.demo.uri}/_tasks/tick/"
    assert target["oidc_token"][0]["service_account_email"] == (
        "${google_service_account.tasks_invoker.email}"
    )
