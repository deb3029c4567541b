"""Run django-q2 tasks on Google Cloud Tasks.

Names are imported on first access, so that importing this package (as Django does for
every app in INSTALLED_APPS) reads no settings and loads no API client.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["CloudTasksBroker", "async_task_after"]

if TYPE_CHECKING:
    from .broker import CloudTasksBroker
    from .delays import async_task_after

_LAZY = {"CloudTasksBroker": "broker", "async_task_after": "delays"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
