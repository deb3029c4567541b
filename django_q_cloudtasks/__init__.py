"""Run django-q2 tasks on Google Cloud Tasks.

Names are imported on first access, so that importing this package (as Django does for
every app in INSTALLED_APPS) reads no settings and loads no API client.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["CloudTasksBroker", "async_task_after"]

if TYPE_CHECKING:
    from .broker import CloudTasksBroker, async_task_after


def __getattr__(name: str) -> Any:
    if name in __all__:
        # On first access, not at import: the broker needs Django's apps ready.
        from . import broker

        return getattr(broker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
