"""The admin: each cluster's Cloud Tasks queue, in the Django Q section beside django-q's
own task lists, and read-only lists of this package's rows.

Who may do what on the queues page:

* See it: active staff with any django-q permission to view or change something
  (``django_q.view_success``, ``django_q.change_schedule``...), as for django-q's lists.
* Pause and resume a queue, run a waiting task now, delete it or cancel it (which also
  stops it while it runs: ``cancellation.py``), replay dead letters:
  ``django_q.change_schedule``, the permission to change when django-q tasks run
  (superusers have every permission).

The page's entry in the index comes from ``CloudTasksQueue``: a model with no table,
labelled ``django_q`` so that it lists under Django Q, and kept in a registry of its own
instead of Django's, so that no migration (in django-q's app, which is not ours), content
type or permission is ever made for it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from django.apps import apps
from django.apps.registry import Apps
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models.functions import Length
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.text import capfirst
from django.views.decorators.http import require_POST

from .broker import CloudTasksBroker
from .cancellation import cancel
from .conf import QueueSettings, cluster_names, queue_settings
from .exceptions import CloudTasksError, QueueUnavailable
from .gcp import queue_admin
from .gcp.tasks import run_task
from .models import DeadLetter, Payload, Receipt
from .receiver import deadletters

logger = logging.getLogger("django_q_cloudtasks")

STEER_PERMISSION = "django_q.change_schedule"
# A Cloud Task id, as Cloud Tasks allows it: nothing else reaches the API or the log.
CLOUD_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")
# A dead letter's body is shown up to this many bytes: a package can be megabytes.
BODY_PREVIEW_BYTES = 2048


class CloudTasksQueue(models.Model):  # noqa: DJ008  (no rows to name)
    """The queues page's entry in the admin index: no table, no rows."""

    class Meta:
        app_label = "django_q"
        managed = False
        apps = Apps(installed_apps=())
        verbose_name = "Cloud Tasks queue"
        verbose_name_plural = "Cloud Tasks queues"


@dataclass(frozen=True)
class QueueView:
    """One queue as the page shows it: what Cloud Tasks said, or why it could not say."""

    settings: QueueSettings
    info: queue_admin.QueueInfo | None = None
    tasks: list[queue_admin.WaitingTask] = field(default_factory=list)
    error: str = ""
    # The listed tasks running now, by django-q id: where ("" in a receiver), from receipts.
    running: dict[str, str] = field(default_factory=dict)

    @property
    def truncated(self) -> bool:
        return len(self.tasks) >= queue_admin.DEFAULT_LIMIT

    @property
    def listed(self) -> list[tuple[queue_admin.WaitingTask, str | None]]:
        """Each task, and where it runs now: None if it does not, else its execution, or
        "" for a receiver."""
        return [(task, self.running.get(task.django_q_id)) for task in self.tasks]


def read_queue(qs: QueueSettings) -> QueueView:
    """A queue and its waiting tasks; a queue that cannot be read does not hide the others."""
    try:
        info = queue_admin.inspect(qs)
        tasks = queue_admin.waiting_tasks(qs)
        return QueueView(qs, info, tasks, running=_running(tasks))
    except QueueUnavailable as error:
        return QueueView(qs, error=str(error))


def _running(tasks: list[queue_admin.WaitingTask]) -> dict[str, str]:
    """Which of ``tasks`` run now, and where: a job cluster's task stays in its queue while
    its execution runs it."""
    ids = [task.django_q_id for task in tasks if task.django_q_id]
    claims = Receipt.objects.filter(
        task_id__in=ids, state=Receipt.State.RUNNING, lease_until__gt=timezone.now()
    )
    return {
        task_id: execution.rsplit("/", 1)[-1]
        for task_id, execution in claims.values_list("task_id", "execution")
    }


def steer(action: str, qs: QueueSettings, task_id: str, cloud_task: str = "") -> tuple[int, str]:
    """Do one action on a queue or on one of its tasks; the message level and text that
    say what happened. ``cloud_task``: for a cancel, the Cloud Task that carries the task,
    a hop's name where it is not the task's."""
    # A sharded cluster's actions cover every one of its queues (queue_admin.py).
    queue = qs.queue_path + (f" and its {qs.shards - 1} shards" if qs.shards > 1 else "")
    if action == "pause":
        queue_admin.pause(qs)
        return messages.SUCCESS, f"Paused {queue}: its tasks wait until it is resumed."
    if action == "resume":
        queue_admin.resume(qs)
        return messages.SUCCESS, f"Resumed {queue}."
    if action == "cancel":  # task_id: the django-q task's
        found = cancel(task_id, cluster=qs.cluster, cloud_task=cloud_task or None)
        return messages.SUCCESS, f"Task {task_id}: {found.description}."
    if action == "run":
        done = run_task(qs, task_id)
    else:  # its payload too, if it is a big task
        done = CloudTasksBroker(qs.cluster).delete(task_id)
    if not done:
        return messages.WARNING, f"Task {task_id} is no longer in {queue}: it ran or was deleted."
    verb = "Dispatched" if action == "run" else "Deleted"
    return messages.SUCCESS, f"{verb} task {task_id} of {queue}."


@admin.register(CloudTasksQueue)
class CloudTasksQueueAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The queues page, in place of a change list; no add, change or delete forms."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_module_perms("django_q")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        user = request.user
        return user.is_active and (
            user.is_superuser
            or any(
                perm.startswith(("django_q.view_", "django_q.change_"))
                for perm in user.get_all_permissions()
            )
        )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(STEER_PERMISSION)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        changelist = self.admin_site.admin_view(self.changelist_view)
        act = self.admin_site.admin_view(self.act)
        return [
            path("", changelist, name=f"{prefix}_changelist"),
            *(
                path(f"<str:cluster>/{action}/", act, {"action": action}, name=f"{prefix}_{action}")
                for action in ("pause", "resume")
            ),
            *(
                path(
                    f"<str:cluster>/tasks/<str:task_id>/{action}/",
                    act,
                    {"action": action},
                    name=f"{prefix}_{action}",
                )
                for action in ("run", "delete", "cancel")
            ),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": capfirst(self.opts.verbose_name_plural),
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "app_name": apps.get_app_config(self.opts.app_label).verbose_name,
            "queues": [read_queue(queue_settings(name)) for name in cluster_names()],
            "may_steer": self.has_change_permission(request),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/django_q_cloudtasks/queues.html", context)

    @method_decorator(require_POST)
    def act(
        self, request: HttpRequest, cluster: str, action: str, task_id: str = ""
    ) -> HttpResponse:
        """Pause, resume, run, delete or cancel, then back to the page with a message saying
        so."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        if cluster not in cluster_names():
            raise Http404(f"No cluster {cluster!r}.")
        cloud_task = request.POST.get("cloud_task", "")
        if any(name and not CLOUD_TASK_ID.fullmatch(name) for name in (task_id, cloud_task)):
            raise Http404("No such Cloud Task.")
        try:
            level, message = steer(action, queue_settings(cluster), task_id, cloud_task)
        except CloudTasksError as error:
            level, message = messages.ERROR, str(error)
        logger.info("%s, in the admin: %s", request.user.get_username(), message)
        self.message_user(request, message, level)
        page = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist",
            current_app=self.admin_site.name,
        )
        return HttpResponseRedirect(f"{page}#queue-{quote(cluster)}")


class RecordAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Rows the receiver writes: the admin shows them and never edits them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class KeptRecordAdmin(RecordAdmin):
    """Rows the receiver still needs: deleting a receipt would let a duplicate delivery run
    its task again; deleting a payload, abandon its task."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(DeadLetter)
class DeadLetterAdmin(RecordAdmin):
    """Deliveries that could not run: replayed once their cause is fixed, or deleted once
    looked at."""

    list_display = ("received", "queue", "cloud_task", "reason")
    list_filter = ("queue",)
    search_fields = ("cloud_task", "reason")
    date_hierarchy = "received"
    fields = ("received", "path", "queue", "cloud_task", "reason", "content_type", "body_preview")
    readonly_fields = ("body_preview",)
    actions = ["replay"]

    def get_queryset(self, request: HttpRequest) -> models.QuerySet[DeadLetter]:
        return super().get_queryset(request).defer("body")  # loaded by the detail page alone

    @method_decorator(transaction.non_atomic_requests)  # a replay runs django-q's worker
    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().changelist_view(request, extra_context)

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(STEER_PERMISSION)

    @admin.action(description="Replay selected dead letters", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: models.QuerySet[DeadLetter]) -> None:
        """Each letter through the receiver again, oldest first, in this request
        (``receiver/deadletters.py``)."""
        oldest_first = queryset.order_by("received", "pk").values_list("pk", flat=True)
        for replayed in deadletters.replay_each(oldest_first):
            logger.info("%s, in the admin: %s", request.user.get_username(), replayed)
            level = messages.SUCCESS if replayed.deleted else messages.WARNING
            self.message_user(request, str(replayed), level)

    @admin.display(description="body")
    def body_preview(self, letter: DeadLetter) -> str:
        """The body's start, as text if it is ASCII (a signed package is), else in hex."""
        body = bytes(letter.body)
        head = body[:BODY_PREVIEW_BYTES]
        try:
            shown = head.decode("ascii")
        except UnicodeDecodeError:
            shown = head.hex(" ")
        size = f"{len(body):,} bytes" + (f", the first {len(head):,} shown" if head != body else "")
        return format_html(
            '<pre style="white-space: pre-wrap; word-break: break-all">{}</pre>{}', shown, size
        )


@admin.register(Payload)
class PayloadAdmin(KeptRecordAdmin):
    list_display = fields = ("task_id", "size", "created")
    readonly_fields = ("size",)
    search_fields = ("task_id",)
    date_hierarchy = "created"

    def get_queryset(self, request: HttpRequest) -> models.QuerySet[Payload]:
        # A package can be megabytes: count it in the database instead of loading it.
        sized: models.QuerySet[Payload] = (
            super().get_queryset(request).defer("package").annotate(size=Length("package"))
        )
        return sized

    @admin.display(description="size", ordering="size")
    def size(self, payload: Payload) -> str:
        return f"{payload.size:,} bytes"  # type: ignore[attr-defined]


@admin.register(Receipt)
class ReceiptAdmin(KeptRecordAdmin):
    list_display = (
        "task_id",
        "cluster",
        "state",
        "deliveries",
        "lost",
        "execution",
        "cancelled",
        "lease_until",
        "updated",
    )
    list_filter = ("state", "cluster")
    search_fields = ("task_id",)
    date_hierarchy = "updated"
