"""Run django-q2 tasks on Google Cloud Tasks.

Names are imported on first access, so that importing this package (as Django does for
every app in INSTALLED_APPS) reads no settings and loads no API client.
"""

import importlib
from importlib import metadata
from typing import TYPE_CHECKING, Any

try:  # pyproject.toml holds the version; the installed package's metadata carries it
    __version__ = metadata.version("django-q-cloudtasks")
except metadata.PackageNotFoundError:  # a checkout on sys.path, not installed
    __version__ = "0+unknown"
# Each public name, and the module that holds it.
_PUBLIC = {
    "CloudTasksBroker": "broker",
    "async_task_after": "broker",
    "cancel": "cancellation",
    "Cancellation": "cancellation",
    "cancelled": "receiver.execution",
    "TaskCancelled": "exceptions",
}
__all__ = [
    "Cancellation",
    "CloudTasksBroker",
    "TaskCancelled",
    "async_task_after",
    "cancel",
    "cancelled",
]

if TYPE_CHECKING:
    from .broker import CloudTasksBroker, async_task_after
    from .cancellation import Cancellation, cancel
    from .exceptions import TaskCancelled
    from .receiver.execution import cancelled


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        # On first access, not at import: these modules need Django's apps ready.
        module = importlib.import_module(f"{__name__}.{_PUBLIC[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
