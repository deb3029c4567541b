"""Task functions the tests enqueue. Each leaves a trace in a file it is given, so a test
counts executions, not deliveries."""

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
