"""The admin in a real browser: headless Chromium, driven by Playwright, against a live
server that the built-in emulator delivers to.

The server is pytest-django's ``live_server`` (a thread of this process, serving the admin's
static files) and the emulator runs in-process, so the test sees the same database and
settings as both. Set DJQ_SCREENSHOTS=1 to rewrite docs/admin-cloud-tasks.png, the
picture of the queues page in the monitoring guide.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django_q.humanhash import humanize
from django_q.models import Failure, Success
from django_q.tasks import async_task
from playwright.sync_api import Browser, Locator, Page, expect

from django_q_cloudtasks import async_task_after
from django_q_cloudtasks.conf import cluster_names, queue_settings
from django_q_cloudtasks.gcp.provisioning import desired_fields, queues_of
from tests.conftest import wait_for
from tests.support.browser import headless_chromium

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "admin-cloud-tasks.png"
# Deliveries go through the emulator and a live server on 2 shared cores: allow time.
DELIVERY_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with pytest.MonkeyPatch.context() as patch, headless_chromium() as launched:
        # Playwright's sync API runs an event loop in this thread, where the ORM would then
        # refuse to run; the test's queries are no less synchronous for it.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        expect.set_options(timeout=15_000)  # each page is served on 2 shared cores
        yield launched


@pytest.fixture
def delivering(live_server: Any, configure: Callable[..., None]) -> Iterator[str]:
    """The built-in emulator, delivering to the live server, its queues made as
    ``cloudtasks_setup`` makes them; yields the server's URL."""
    from django_q_cloudtasks.emulator import Emulator
    from tests.support.ports import free_port_pair

    with Emulator(port=free_port_pair()) as emulator:
        configure(url=f"{live_server.url}/_tasks/", emulator_host=emulator.address)
        for queue in queues_of(queue_settings(name) for name in cluster_names()):
            emulator.ensure_queue(queue.queue_path, desired_fields(queue))
        yield live_server.url


@pytest.fixture
def admin_page(browser: Browser, delivering: str, admin_user: Any) -> Iterator[Page]:
    """A page logged in to the admin, through the login form, as a superuser."""
    context = browser.new_context(base_url=delivering, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(reverse("admin:index"))
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#user-tools")).to_contain_text("Welcome")
    yield page
    context.close()


def reload_until(page: Page, locator: Locator, count: int = 1) -> None:
    """Reload the page until ``locator`` matches ``count`` elements: what it waits for
    happens on the server, where no script of the page would see it."""

    def matches() -> bool:
        # A new GET: reload() would post a form again, and a URL with only its #fragment
        # changed would not load at all.
        page.goto(page.url.split("#")[0])
        return locator.count() == count

    wait_for(matches, timeout=DELIVERY_TIMEOUT, interval=0.5)


def message(page: Page) -> Locator:
    return page.locator("ul.messagelist li")


def test_the_queues_page_steers_the_queue(admin_page: Page, tmp_path: Path) -> None:
    page = admin_page
    page.locator(".app-django_q").get_by_role("link", name="Cloud Tasks queues").click()
    expect(page).to_have_title(re.compile(r"^Cloud Tasks queues \|"))
    queue = page.locator("#queue-tests")
    waiting = queue.locator("table.tasks tbody tr")
    expect(queue.locator(".state-RUNNING")).to_have_text("RUNNING")
    # Cloud Tasks retries without end; django-q's max_attempts decides when a task is done.
    expect(queue.locator("tr", has_text="Cloud Tasks retries")).to_contain_text(
        "unlimited attempts"
    )

    queue.get_by_role("button", name="Pause tests").click()
    expect(message(page)).to_contain_text("Paused projects/test-project/")
    expect(queue.locator(".state-PAUSED")).to_have_text("PAUSED")

    trace = tmp_path / "trace"
    run_id = async_task("tests.project.tasks.echo", "hello")
    delete_id = async_task("tests.project.tasks.append", str(trace), "deleted")
    failing_id = async_task("tests.project.tasks.count_and_fail", str(trace))
    async_task("math.copysign", 3, -1)
    async_task_after(timedelta(hours=1), "tests.project.tasks.stamp", str(trace))
    page.reload()
    row = page.locator(f"#task-{run_id}")
    expect(row).to_contain_text(humanize(run_id))
    expect(row).to_contain_text("tests.project.tasks.echo")
    expect(waiting).to_have_count(5)

    row.get_by_role("button", name="Run now").click()
    expect(message(page)).to_contain_text(f"Dispatched task {run_id}")
    reload_until(page, row, count=0)  # it ran, and succeeded: Cloud Tasks deleted it
    page.locator(f"#task-{failing_id}").get_by_role("button", name="Run now").click()
    failed = page.locator(f"#task-{failing_id}", has_text="HTTP status code 500")
    reload_until(page, failed)  # answered 500: it waits for a retry the paused queue holds
    if os.environ.get("DJQ_SCREENSHOTS"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.locator(".breadcrumbs").get_by_role("link", name="Django Q").click()
    page.locator("#content-main").get_by_role("link", name="Successful tasks").click()
    expect(page.locator("#result_list")).to_contain_text(humanize(run_id))

    page.goto(reverse("admin:django_q_cloudtasksqueue_changelist"))
    page.locator(f"#task-{delete_id}").get_by_role("button", name="Delete").click()
    expect(message(page)).to_contain_text(f"Deleted task {delete_id}")
    expect(page.locator(f"#task-{delete_id}")).to_have_count(0)
    expect(waiting).to_have_count(3)

    queue.get_by_role("button", name="Resume tests").click()
    expect(message(page)).to_contain_text("Resumed projects/test-project/")
    expect(queue.locator(".state-RUNNING")).to_have_text("RUNNING")
    wait_for(lambda: Failure.objects.filter(id=failing_id, attempt_count=3).exists())
    assert "deleted" not in trace.read_text()  # the deleted task never ran
    assert Success.objects.filter(id=run_id).exists()


def test_a_failed_task_resubmitted_from_the_admin_runs_again_in_its_clusters_queue(
    admin_page: Page, tmp_path: Path
) -> None:
    page = admin_page
    trace = tmp_path / "trace"
    first_id = async_task(
        "tests.project.tasks.count_and_fail", str(trace), cluster="second", ack_failure=True
    )
    page.locator(".app-django_q").get_by_role("link", name="Failed tasks").click()
    first = page.locator("#result_list tr", has_text=humanize(first_id))
    reload_until(page, first)

    # Paused, the queue keeps the resubmitted task for the page to show. (It also keeps the
    # delivery from writing to SQLite while the admin's request holds it.)
    page.goto(reverse("admin:django_q_cloudtasksqueue_changelist"))
    second = page.locator("#queue-second")
    second.get_by_role("button", name="Pause second-queue").click()
    expect(second.locator(".state-PAUSED")).to_have_text("PAUSED")
    page.goto(reverse("admin:django_q_failure_changelist"))
    first.locator("input.action-select").check()
    page.locator("select[name=action]").select_option("resubmit_task")
    # The button reads "Go" before Django 6.0 and "Run" from it on.
    page.locator(".actions").get_by_role("button", name=re.compile(r"^(Go|Run)$")).click()
    expect(page.locator("#changelist")).to_be_visible()
    expect(first).to_have_count(0)  # django-q deletes the failure it resubmits

    page.goto(reverse("admin:django_q_cloudtasksqueue_changelist"))
    waiting = second.locator("table.tasks tbody tr")
    expect(waiting).to_have_count(1)
    expect(waiting).to_contain_text("tests.project.tasks.count_and_fail")
    expect(page.locator("#queue-tests table.tasks")).to_contain_text("No task is waiting.")
    second.get_by_role("button", name="Resume second-queue").click()
    expect(second.locator(".state-RUNNING")).to_have_text("RUNNING")

    # The second cluster allows 2 attempts: the new task fails twice, then stays failed.
    page.goto(reverse("admin:django_q_failure_changelist"))
    again = page.locator("#result_list tr", has_text="tests.project.tasks.count_and_fail")
    reload_until(page, again)
    expect(again).to_contain_text("second")
    resubmitted = Failure.objects.get(func="tests.project.tasks.count_and_fail")
    assert (resubmitted.id != first_id, resubmitted.cluster) == (True, "second")
    wait_for(lambda: Failure.objects.filter(attempt_count=2).exists())
    assert trace.read_text() == "xxx"  # once, then twice more after the resubmission


def test_a_running_task_is_cancelled_from_the_queues_page(admin_page: Page, tmp_path: Path) -> None:
    page = admin_page
    trace = tmp_path / "trace"
    task_id = async_task("tests.project.tasks.until_cancelled", str(trace), 30)
    wait_for(trace.exists, timeout=DELIVERY_TIMEOUT)
    page.goto(reverse("admin:django_q_cloudtasksqueue_changelist"))
    row = page.locator(f"#task-{task_id}")
    expect(row).to_contain_text("Running in a receiver")
    row.get_by_role("button", name="Cancel").click()
    expect(message(page)).to_contain_text(f"Task {task_id}: asked to stop")
    failure = wait_for(lambda: Failure.objects.filter(id=task_id).first(), timeout=15)
    assert "TaskCancelled" in failure.result
    reload_until(page, page.locator(f"#task-{task_id}"), count=0)  # answered 200: not retried
