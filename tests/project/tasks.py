"""Task functions the tests enqueue. Each leaves a trace in a file it is given, so a test
counts executions, not deliveries."""

import hashlib
import os
import signal
import time
from pathlib import Path
from typing import Any


def append(path: str, text: str) -> str:
    with Path(path).open("a") as file:
        file.write(text)
    return text


def count_and_fail(path: str) -> None:
    append(path, "x")
    raise RuntimeError("this task always fails")


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def record_hook(task: Any) -> None:
    """A django-q hook: writes the task's result next to its arguments' file."""
    append(task.kwargs["hook_path"], f"{task.func}={task.result}")


def echo(*args: Any, **kwargs: Any) -> Any:
    return args[0] if args else kwargs


class LeavesATrace:
    """Unpickling this creates a file: proof that a body was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (append, (self.path, "unpickled"))


def stamp(path: str) -> float:
    """Appends the time this run started, one line per run."""
    started = time.time()
    append(path, f"{started}\n")
    return started


def note_pid_then_sleep(path: str, seconds: float) -> float:
    """Appends this process's id, one line per run, then sleeps: a task to kill mid-run."""
    append(path, f"{os.getpid()}\n")
    time.sleep(seconds)
    return seconds


def run_until_released(path: str) -> str:
    """Appends a line per run, then waits until ``PATH.go`` exists (at most 60 s)."""
    append(path, "ran\n")
    go = Path(f"{path}.go")
    deadline = time.monotonic() + 60
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return "released"


def count_saves(task: Any) -> None:
    """A django-q hook, called each time the Task row is saved: counts the saves."""
    append(f"{task.args[0]}.saves", "s")


def die_after_saving(task: Any) -> None:
    """A django-q hook: the result is saved, and the process dies before it can answer."""
    count_saves(task)
    os.kill(os.getpid(), signal.SIGKILL)


def where_it_runs(path: str, seconds: float) -> dict[str, Any]:
    """Appends where this run happens (process id, Cloud Run execution), then sleeps."""
    here = {"pid": os.getpid(), "execution": os.environ.get("CLOUD_RUN_EXECUTION", "")}
    append(path, f"{here['pid']} {here['execution']}\n")
    time.sleep(seconds)
    return here


def until_cancelled(path: str, seconds: float = 60) -> str:
    """Appends a line, then loops until ``cancelled()`` turns true (at most ``seconds``):
    appends how long that took, and stops as cancelled."""
    from django_q_cloudtasks import TaskCancelled, cancelled

    started = time.monotonic()
    append(path, "ran\n")
    while not cancelled():
        if time.monotonic() - started > seconds:
            return "never cancelled"
        time.sleep(0.05)
    append(path, f"cancelled after {time.monotonic() - started:.2f}\n")
    raise TaskCancelled()


def clean_up_when_cancelled(path: str, seconds: float) -> float:
    """Appends its process id, then sleeps; appends "cleaned up" when it is cancelled."""
    from django_q_cloudtasks import TaskCancelled

    append(path, f"{os.getpid()}\n")
    try:
        time.sleep(seconds)
    except TaskCancelled:
        append(path, "cleaned up\n")
        raise
    return seconds


def stopped_by_sigterm(path: str, task_id: str, *, cancel_first: bool) -> str:
    """Appends a line, sends this process SIGTERM (as Cloud Run does to an execution it
    cancels), having marked its task cancelled first if told to; appends if not stopped."""
    from django.utils import timezone

    from django_q_cloudtasks.models import Receipt

    if cancel_first:
        Receipt.objects.filter(task_id=task_id).update(cancelled=timezone.now())
    append(path, "ran\n")
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    append(path, "not stopped\n")
    return "not stopped"


def exit_with(path: str, status: int) -> None:
    """Appends a line, then ends the process as ``sys.exit`` does, past django-q."""
    append(path, "ran\n")
    raise SystemExit(status)


def clean_up_through_a_second_sigterm(path: str) -> None:
    """Sends itself SIGTERM; cleaning up after TaskCancelled, it gets a second one."""
    from django_q_cloudtasks import TaskCancelled

    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    except TaskCancelled:
        os.kill(os.getpid(), signal.SIGTERM)  # Cloud Run's, after the renewal's own
        time.sleep(0.2)
        append(path, "cleaned up\n")
        raise


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
